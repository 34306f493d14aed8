//! The client-facing service: one connection loop, one function per
//! command. Handlers decode with `fdfs-proto`, call the [`Store`] and
//! encode the reply; content is streamed in fixed-size chunks both ways.
//!
//! Error conventions (PROTOCOL.md §1.2 and the golden `bad_requests`):
//! * a header-only EINVAL reply closes the connection; other errors keep it
//!   open;
//! * DOWNLOAD, GET_METADATA and QUERY_FILE_INFO of a malformed or missing
//!   name answer ENOENT and keep the connection;
//! * a group other than ours is EINVAL (and close);
//! * a body length beyond the limit of a non-streamed command, a negative
//!   length, a body that stops short or a peer that stalls past
//!   `network_timeout`: the connection is closed (no reply).

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fdfs_proto::codec::Reader;
use fdfs_proto::common::{read_group, GROUP_LEN};
use fdfs_proto::storage::{
    decode_appender_name, AppendHead, FileIdResp, FileInfoResp, ModifyHead, RegenerateReq,
    SetMetadataReq, SlaveUpload, SlaveUploadHead, TruncateReq, UploadHead,
};
use fdfs_proto::{cmd, errno, GroupName, Header, IpSize, LogicName, SourceServer};
use fdfs_runtime::net::{Conn, ConnError};
use tracing::{debug, warn};

use crate::access_log::{AccessLog, Note};
use crate::store::stats::idx;
use crate::store::{Store, StoreError, UploadKind};

/// Chunk size for streamed content, both directions.
const CHUNK: usize = 256 * 1024;

/// Downloads of at least this many bytes go out with sendfile(2); smaller
/// ones in one write with their header (no second syscall).
const SENDFILE_MIN: u64 = 32 * 1024;

/// The most one sendfile call sends.
const SENDFILE_CHUNK: u64 = 4 * 1024 * 1024;

const SHRANK: &str = "the file is shorter than it was when opened";

/// How far [`Session::send_file`] got.
enum Sent {
    /// Nothing: the download is too small for sendfile.
    Nothing,
    /// The header is out, sendfile refused the file.
    HeaderOnly,
    All,
    /// Part of the reply is out and the rest failed.
    Short(String),
}

/// What a handler wants next.
enum Flow {
    Continue,
    Close,
}

type Res = Result<Flow, ConnError>;

/// Shared by every connection.
pub struct Service {
    pub store: Arc<Store>,
    /// Serves the storage-to-storage SYNC_* commands.
    pub sync: Arc<crate::sync::Receiver>,
    /// Largest body of a non-streamed request (`buff_size`).
    pub max_body: u64,
    /// What the trackers told us: our group's servers, to turn the server
    /// id in a file name into an address.
    pub reporter: Arc<crate::reporter::ReporterState>,
    /// `write_quorum` above 1: how new files wait for the group.
    pub quorum: Option<crate::sync::quorum::Quorum>,
    /// `[access-log] enabled`: a line per client request.
    pub access_log: Option<AccessLog>,
    /// Trunk slots for small files, and the trunk server's role.
    pub trunk: Arc<crate::trunk::Trunk>,
}

/// Work on files up to this size (or chunks up to it) runs inline: it hits
/// the page cache and costs less than handing the worker thread over.
pub(crate) const SMALL: u64 = 64 * 1024;

/// Runs `f` inline when `small`, else through [`blocking`].
pub(crate) fn maybe_blocking<T>(small: bool, f: impl FnOnce() -> T) -> T {
    if small {
        f()
    } else {
        blocking(f)
    }
}

/// Runs blocking file work without stalling the async workers.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `f` on the store in a blocking context while holding `name`'s
/// lock: appender, metadata and delete changes of one file never overlap.
async fn locked<T>(store: &Store, name: &LogicName, f: impl FnOnce(&Store) -> T) -> T {
    let _guard = store.lock_file(name).await;
    blocking(|| f(store))
}

/// Reads `n` body bytes in chunks of `buf`'s size and hands each to `sink`.
/// After the first sink error the rest is still read (and dropped), so the
/// connection stays in step; that error is returned.
pub(crate) async fn stream_body(
    conn: &mut Conn,
    buf: &mut [u8],
    mut n: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<Result<(), StoreError>, ConnError> {
    let mut failed: Option<StoreError> = None;
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        let mut filled = 0;
        // Gather a full chunk (or the rest) before touching the disk.
        while filled < want {
            filled += conn.read_some(&mut buf[filled..want]).await?;
        }
        n -= filled as u64;
        if failed.is_none() {
            let chunk = &buf[..filled];
            if let Err(e) = maybe_blocking(filled as u64 <= SMALL, || sink(chunk)) {
                failed = Some(e);
            }
        }
    }
    Ok(match failed {
        Some(e) => Err(e),
        None => Ok(()),
    })
}

/// Commands of clients (not storage-to-storage sync, not keep-alives):
/// what the access log records.
fn is_client_cmd(code: u8) -> bool {
    !crate::sync::is_sync_cmd(code) && code != cmd::ACTIVE_TEST && code != cmd::QUIT
}

/// One connection's state.
struct Session<'a> {
    svc: &'a Service,
    conn: Conn,
    buf: Vec<u8>,
    /// Who sends sync commands on this connection (REPORT_SERVER_ID).
    sync_peer: crate::sync::PeerTag,
    /// The current request, for the access log.
    note: Note,
}

impl Service {
    /// Serves one connection until the peer leaves or breaks the protocol.
    pub async fn handle(self: Arc<Self>, mut conn: Conn) {
        let stats = self.store.stats().clone();
        stats.connection_alloc.fetch_add(1, Ordering::Relaxed);
        let cur = stats.connection_current.fetch_add(1, Ordering::Relaxed) + 1;
        stats.connection_max.fetch_max(cur, Ordering::Relaxed);
        // Streamed commands may announce any size; the others are checked
        // against `max_body` per command.
        conn.set_max_pkg_len(i64::MAX as u64);
        let mut s = Session {
            svc: &self,
            conn,
            buf: Vec::new(),
            sync_peer: crate::sync::PeerTag::default(),
            note: Note::default(),
        };
        s.run().await;
        stats.connection_current.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session<'_> {
    async fn run(&mut self) {
        let peer = self.conn.peer();
        loop {
            let h = match self.conn.read_header().await {
                Ok(h) => h,
                Err(e) if e.is_normal_close() || matches!(e, ConnError::Timeout(_)) => {
                    // Between requests an idle timeout is routine (pools).
                    debug!(%peer, "connection closed: {e}");
                    return;
                }
                Err(e) => {
                    warn!(%peer, "closing connection: {e}");
                    return;
                }
            };
            let logged = self.svc.access_log.is_some() && is_client_cmd(h.cmd);
            let t0 = logged.then(std::time::Instant::now);
            self.note = Note::default();
            let r = self.dispatch(h).await;
            if let (Some(log), Some(t0)) = (&self.svc.access_log, t0) {
                let note = r.is_ok().then_some(&self.note);
                log.write(peer.ip(), cmd::name(h.cmd), note, t0.elapsed());
            }
            match r {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => {
                    self.close_gently().await;
                    return;
                }
                Err(e) => {
                    if e.is_normal_close() {
                        debug!(%peer, cmd = cmd::name(h.cmd), "connection closed: {e}");
                    } else {
                        warn!(%peer, cmd = cmd::name(h.cmd), "closing connection: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// Closes after a refusal: FIN first, then read (and drop) what the peer
    /// already sent for a moment, so the kernel does not answer unread
    /// input with a reset that could destroy our reply in flight.
    async fn close_gently(&mut self) {
        self.conn.shutdown_write().await;
        let mut sink = [0u8; 16 * 1024];
        let mut left: usize = 1 << 20;
        let drain = async {
            while left > 0 {
                match self.conn.read_some(&mut sink).await {
                    Ok(n) => left = left.saturating_sub(n),
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), drain).await;
    }

    async fn dispatch(&mut self, h: Header) -> Res {
        use cmd::storage as s;
        if self.sync_peer.has_deferred() && !crate::sync::is_sync_cmd(h.cmd) {
            // Replies to pipelined sync requests come first, in order.
            self.svc
                .sync
                .flush(&mut self.conn, &mut self.sync_peer)
                .await?;
        }
        match h.cmd {
            s::UPLOAD_FILE => self.upload(h, false).await,
            s::UPLOAD_APPENDER_FILE => self.upload(h, true).await,
            s::UPLOAD_SLAVE_FILE => self.upload_slave(h).await,
            s::APPEND_FILE => self.append(h).await,
            s::MODIFY_FILE => self.modify(h).await,
            s::TRUNCATE_FILE => self.truncate(h).await,
            s::REGENERATE_APPENDER_FILENAME => self.regenerate(h).await,
            s::DOWNLOAD_FILE => self.download(h).await,
            s::DELETE_FILE => self.delete(h).await,
            s::SET_METADATA => self.set_metadata(h).await,
            s::GET_METADATA => self.get_metadata(h).await,
            s::QUERY_FILE_INFO => self.query_file_info(h).await,
            s::TRUNK_ALLOC_SPACE => self.trunk_alloc(h).await,
            s::TRUNK_ALLOC_CONFIRM | s::TRUNK_FREE_SPACE => self.trunk_slot(h).await,
            s::TRUNK_SYNC_BINLOG
            | s::TRUNK_GET_BINLOG_SIZE
            | s::TRUNK_DELETE_BINLOG_MARKS
            | s::TRUNK_TRUNCATE_BINLOG_FILE => self.trunk_binlog(h).await,
            cmd::ACTIVE_TEST => {
                if h.pkg_len != 0 {
                    return self
                        .refuse(h, errno::EINVAL, "ACTIVE_TEST with a body")
                        .await;
                }
                self.conn.send_status(errno::OK).await?;
                Ok(Flow::Continue)
            }
            cmd::QUIT => Ok(Flow::Close),
            c if crate::sync::is_sync_cmd(c) => {
                let rx = self.svc.sync.clone();
                Ok(
                    if rx.handle(&mut self.conn, h, &mut self.sync_peer).await? {
                        Flow::Continue
                    } else {
                        Flow::Close
                    },
                )
            }
            _ => self.refuse(h, errno::EINVAL, "unknown command").await,
        }
    }

    /// Logs and answers an error. EINVAL closes the connection.
    async fn refuse(&mut self, h: Header, status: u8, why: &str) -> Res {
        warn!(
            peer = %self.conn.peer(),
            cmd = cmd::name(h.cmd),
            code = h.cmd,
            status = errno::describe(status).0,
            "refused: {why}"
        );
        self.note.status = status;
        self.conn.send_status(status).await?;
        Ok(if status == errno::EINVAL {
            Flow::Close
        } else {
            Flow::Continue
        })
    }

    async fn store_err(&mut self, h: Header, e: &StoreError) -> Res {
        self.refuse(h, e.status(), &e.to_string()).await
    }

    /// The reply of a command whose success has no body.
    async fn reply_empty(&mut self, h: Header, res: Result<(), StoreError>) -> Res {
        match res {
            Ok(()) => {
                self.conn.send_status(errno::OK).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.store_err(h, &e).await,
        }
    }

    /// Reads and decodes a whole non-streamed request. `Err(flow)`: it was
    /// over the limit or invalid (refused with EINVAL); the caller returns
    /// `flow`.
    async fn small_req<T>(
        &mut self,
        h: Header,
        decode: impl FnOnce(&[u8]) -> Result<T, fdfs_proto::DecodeError>,
    ) -> Result<Result<T, Flow>, ConnError> {
        let Some(body) = self.small_body(h).await? else {
            return Ok(Err(Flow::Close));
        };
        match decode(&body) {
            Ok(r) => Ok(Ok(r)),
            Err(e) => Ok(Err(self.refuse(h, errno::EINVAL, &e.to_string()).await?)),
        }
    }

    /// Reads the whole body of a non-streamed command. `None`: over the
    /// limit, the connection must be closed without a reply.
    async fn small_body(&mut self, h: Header) -> Result<Option<Vec<u8>>, ConnError> {
        if h.pkg_len > self.svc.max_body {
            warn!(
                peer = %self.conn.peer(),
                cmd = cmd::name(h.cmd),
                len = h.pkg_len,
                limit = self.svc.max_body,
                "body length over the limit, closing"
            );
            return Ok(None);
        }
        Ok(Some(self.conn.read_body(h.pkg_len).await?))
    }

    /// Reads the fixed head of a streamed command (`n` bytes).
    async fn head(&mut self, h: Header, n: usize) -> Result<Option<Vec<u8>>, ConnError> {
        if h.pkg_len < n as u64 {
            return Ok(None);
        }
        let mut b = vec![0u8; n];
        self.conn.read_exact_into(&mut b).await?;
        Ok(Some(b))
    }

    fn group_ok(&self, g: &GroupName) -> bool {
        g == self.svc.store.group()
    }

    fn stats_op(&mut self, total: usize, ok: bool, bytes: Option<(usize, u64)>) {
        if let Some((_, n)) = bytes {
            self.note.bytes = n;
        }
        self.svc.store.stats().op(total, ok, bytes);
    }

    /// Names the request's file in the access log (when it is on). A name
    /// a client sent unchecked keeps to one field: anything but visible
    /// ASCII (spaces too) becomes `?`.
    fn note_file(&mut self, name: &dyn std::fmt::Display) {
        if self.svc.access_log.is_some() {
            let id: String = format!("{}/{name}", self.svc.store.group())
                .chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect();
            self.note.file = Some(id);
        }
    }

    /// Streams `n` body bytes into `sink`. A sink error stops writing but
    /// the rest of the body is still read (and dropped) so the connection
    /// stays usable; the first sink error is returned as `Ok(Err(_))`.
    async fn stream_in(
        &mut self,
        n: u64,
        sink: impl FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<Result<(), StoreError>, ConnError> {
        if self.buf.len() < CHUNK {
            self.buf = vec![0u8; CHUNK];
        }
        stream_body(&mut self.conn, &mut self.buf, n, sink).await
    }

    // ---- UPLOAD_FILE (11) / UPLOAD_APPENDER_FILE (23) ----
    async fn upload(&mut self, h: Header, appender: bool) -> Res {
        let Some(head) = self.head(h, UploadHead::LEN).await? else {
            return self
                .refuse(h, errno::EINVAL, "body shorter than the upload head")
                .await;
        };
        let req = match UploadHead::decode(&head, h.pkg_len) {
            Ok(r) => r,
            Err(e) => return self.refuse(h, errno::EINVAL, &e.to_string()).await,
        };
        let kind = if appender {
            UploadKind::Appender
        } else {
            UploadKind::Normal
        };
        let res = self
            .receive_new_file(req.store_path_index, req.file_size, &req.ext, kind)
            .await?;
        self.finish_new_file(
            h,
            res,
            idx::TOTAL_UPLOAD,
            idx::TOTAL_UPLOAD_BYTES,
            req.file_size,
        )
        .await
    }

    /// Streams a new file's content into the store. The body after the
    /// head is exactly `size` bytes (checked by the head decoders).
    async fn receive_new_file(
        &mut self,
        path: i8,
        size: u64,
        ext: &str,
        kind: UploadKind,
    ) -> Result<Result<LogicName, StoreError>, ConnError> {
        let store = self.svc.store.clone();
        let slot = match kind {
            UploadKind::Normal => self.svc.trunk.slot_for(size),
            _ => None,
        };
        let mut up = match maybe_blocking(size <= SMALL, || match slot {
            Some(_) => store.begin_slot_upload(path, size, ext),
            None => store.begin_upload(path, size, ext, kind),
        }) {
            Ok(u) => u,
            Err(e) => {
                if e.status() != errno::EINVAL {
                    // Keep the connection in step: read past the content.
                    self.conn.discard(size).await?;
                }
                return Ok(Err(e));
            }
        };
        // A broken connection drops `up`, which removes the temporary file.
        if let Err(e) = self.stream_in(size, |c| up.write(c)).await? {
            return Ok(Err(e));
        }
        // A journaled upload only writes before its wait for the journal's
        // commit, which is async: no blocking thread for it (unless its
        // append may wait for a checkpoint).
        let inline = !store.config().durable || (up.journaled() && !store.journal_may_wait());
        let small = size <= SMALL && inline;
        let mut packed = None;
        if let Some(need) = slot {
            let trunk = &self.svc.trunk;
            if let Some(info) = trunk.alloc(Store::upload_path(&up) as u8, need).await {
                // Inline on the same terms as a whole small file: it writes
                // into the page cache (and journals) only.
                match maybe_blocking(small, || store.finish_upload_in_slot(&mut up, info)) {
                    Ok(d) => packed = Some(d),
                    Err(StoreError::Exists(why)) => {
                        // Kept taken on the trunk server; this one is
                        // stored whole.
                        warn!("trunk: {why}; the file is stored whole");
                        trunk.confirm(info, errno::EEXIST).await;
                    }
                    Err(e) => {
                        trunk.confirm(info, errno::EIO).await;
                        return Ok(Err(e));
                    }
                }
            }
        }
        if slot.is_some() && packed.is_none() {
            self.svc.trunk.stored_whole();
        }
        let done = match packed {
            Some(d) => d,
            None => match maybe_blocking(small, || store.finish_upload_deferred(up)) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            },
        };
        if let Some(wait) = done.wait {
            if let Err(e) = store.journaled(wait).await {
                return Ok(Err(e));
            }
        }
        Ok(self.reach_quorum(done.name, done.binlog_end).await)
    }

    /// With `write_quorum`, a new file is acknowledged only once enough
    /// peers hold it. If they do not within `write_quorum_timeout`, the
    /// upload fails (ETIMEDOUT) and the file is deleted again: the client,
    /// who gets no file ID, finds nothing left behind once the delete has
    /// replicated too.
    async fn reach_quorum(
        &self,
        name: LogicName,
        end: (u32, u64),
    ) -> Result<LogicName, StoreError> {
        let Some(q) = &self.svc.quorum else {
            return Ok(name);
        };
        match q.wait(end).await {
            Ok(()) => Ok(name),
            Err(holders) => {
                warn!(
                    file = %name,
                    servers = q.servers,
                    peers_with_it = ?holders,
                    timeout = ?q.timeout,
                    "write quorum not reached: the upload fails and the file is deleted"
                );
                let store = self.svc.store.clone();
                match locked(&store, &name, |s| s.delete(&name)).await {
                    Ok(()) => self.freed(&name),
                    Err(e) => warn!(file = %name, "deleting the file of a failed quorum: {e}"),
                }
                Err(StoreError::Quorum(format!(
                    "{} of {} servers hold {name} after {:?}",
                    holders.len() + 1,
                    q.servers,
                    q.timeout
                )))
            }
        }
    }

    async fn finish_new_file(
        &mut self,
        h: Header,
        res: Result<LogicName, StoreError>,
        total: usize,
        bytes: usize,
        size: u64,
    ) -> Res {
        self.stats_op(total, res.is_ok(), Some((bytes, size)));
        match res {
            Ok(name) => {
                self.note_file(&name);
                let mut body = Vec::with_capacity(GROUP_LEN + 64);
                FileIdResp {
                    group: self.svc.store.group().clone(),
                    filename: name,
                }
                .encode(&mut body);
                self.conn.send(errno::OK, &body).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.store_err(h, &e).await,
        }
    }

    // ---- UPLOAD_SLAVE_FILE (21) ----
    async fn upload_slave(&mut self, h: Header) -> Res {
        let Some(head) = self.head(h, SlaveUploadHead::LEN).await? else {
            return self
                .refuse(h, errno::EINVAL, "body shorter than the slave upload head")
                .await;
        };
        let head = match SlaveUploadHead::decode(&head, h.pkg_len) {
            Ok(r) => r,
            Err(e) => return self.refuse(h, errno::EINVAL, &e.to_string()).await,
        };
        let mut master = vec![0u8; head.master_len];
        self.conn.read_exact_into(&mut master).await?;
        let req = match SlaveUpload::decode(head, &master) {
            Ok(r) => r,
            Err(e) => return self.refuse(h, errno::EINVAL, &e.to_string()).await,
        };
        let kind = UploadKind::Slave {
            master: req.master.clone(),
            prefix: req.prefix.clone(),
        };
        let res = self
            .receive_new_file(-1, req.file_size, &req.ext, kind)
            .await?;
        self.finish_new_file(
            h,
            res,
            idx::TOTAL_UPLOAD,
            idx::TOTAL_UPLOAD_BYTES,
            req.file_size,
        )
        .await
    }

    // ---- APPEND_FILE (24) / MODIFY_FILE (34) ----
    async fn append(&mut self, h: Header) -> Res {
        let Some(head) = self.head(h, AppendHead::LEN).await? else {
            return self
                .refuse(h, errno::EINVAL, "body shorter than the append head")
                .await;
        };
        let head = match AppendHead::decode(&head, h.pkg_len) {
            Ok(r) => r,
            Err(e) => return self.refuse(h, errno::EINVAL, &e.to_string()).await,
        };
        self.update(h, head.name_len, None, head.file_size).await
    }

    async fn modify(&mut self, h: Header) -> Res {
        let Some(head) = self.head(h, ModifyHead::LEN).await? else {
            return self
                .refuse(h, errno::EINVAL, "body shorter than the modify head")
                .await;
        };
        let head = match ModifyHead::decode(&head, h.pkg_len) {
            Ok(r) => r,
            Err(e) => return self.refuse(h, errno::EINVAL, &e.to_string()).await,
        };
        self.update(h, head.name_len, Some(head.offset), head.file_size)
            .await
    }

    async fn update(&mut self, h: Header, name_len: usize, offset: Option<u64>, size: u64) -> Res {
        let (total, bytes) = if offset.is_none() {
            (idx::TOTAL_APPEND, idx::TOTAL_APPEND_BYTES)
        } else {
            (idx::TOTAL_MODIFY, idx::TOTAL_MODIFY_BYTES)
        };
        let mut nb = vec![0u8; name_len];
        self.conn.read_exact_into(&mut nb).await?;
        let name = match decode_appender_name(&nb) {
            Ok(n) => n,
            Err(e) => return self.refuse(h, errno::EINVAL, &e.to_string()).await,
        };
        self.note_file(&name);
        let store = self.svc.store.clone();
        let _guard = store.lock_file(&name).await;
        let mut up = match blocking(|| store.begin_update(&name, offset, size)) {
            Ok(u) => u,
            Err(e) => {
                self.stats_op(total, false, None);
                if e.status() != errno::EINVAL {
                    self.conn.discard(size).await?;
                }
                return self.store_err(h, &e).await;
            }
        };
        if size == 0 {
            // Nothing to write: success without a change or a record.
            drop(up);
            self.stats_op(total, true, None);
            self.conn.send_status(errno::OK).await?;
            return Ok(Flow::Continue);
        }
        let res = match self.stream_in(size, |c| up.write(c)).await? {
            Ok(()) => blocking(|| store.finish_update(up)),
            Err(e) => Err(e),
        };
        self.stats_op(total, res.is_ok(), Some((bytes, size)));
        self.reply_empty(h, res).await
    }

    // ---- TRUNCATE_FILE (36) ----
    async fn truncate(&mut self, h: Header) -> Res {
        let req = match self.small_req(h, TruncateReq::decode).await? {
            Ok(r) => r,
            Err(flow) => return Ok(flow),
        };
        self.note_file(&req.filename);
        let store = self.svc.store.clone();
        let res = locked(&store, &req.filename, |s| {
            s.truncate(&req.filename, req.new_size)
        })
        .await;
        self.stats_op(idx::TOTAL_TRUNCATE, res.is_ok(), None);
        self.reply_empty(h, res).await
    }

    // ---- REGENERATE_APPENDER_FILENAME (38) ----
    async fn regenerate(&mut self, h: Header) -> Res {
        let req = match self.small_req(h, RegenerateReq::decode).await? {
            Ok(r) => r,
            Err(flow) => return Ok(flow),
        };
        self.note_file(&req.filename);
        let store = self.svc.store.clone();
        let res = locked(&store, &req.filename, |s| s.regenerate(&req.filename)).await;
        match res {
            Ok(name) => {
                let mut body = Vec::new();
                FileIdResp {
                    group: store.group().clone(),
                    filename: name,
                }
                .encode(&mut body);
                self.conn.send(errno::OK, &body).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.store_err(h, &e).await,
        }
    }

    /// Decodes `group16 + filename` after `skip` leading bytes. The group
    /// must be valid and ours (else EINVAL); the name is returned unparsed
    /// so each command decides what a bad name means.
    fn group_and_name<'b>(&self, body: &'b [u8], skip: usize) -> Result<&'b [u8], String> {
        if body.len() <= skip + GROUP_LEN {
            return Err(format!("body of {} bytes has no file name", body.len()));
        }
        let mut r = Reader::new("request", &body[skip..]);
        let g = read_group(&mut r, GROUP_LEN, false).map_err(|e| e.to_string())?;
        if !self.group_ok(&g) {
            return Err(format!(
                "group {g} is not ours ({})",
                self.svc.store.group()
            ));
        }
        Ok(&body[skip + GROUP_LEN..])
    }

    /// A name for a read-type command: `None` means "not found".
    fn read_name(name: &[u8]) -> Result<LogicName, String> {
        let s = std::str::from_utf8(name).map_err(|_| "file name is not UTF-8".to_owned())?;
        LogicName::parse(s).map_err(|e| format!("{s:?}: {e}"))
    }

    // ---- DOWNLOAD_FILE (14) ----
    async fn download(&mut self, h: Header) -> Res {
        let Some(body) = self.small_body(h).await? else {
            return Ok(Flow::Close);
        };
        if body.len() < 16 {
            return self
                .refuse(h, errno::EINVAL, "download request too short")
                .await;
        }
        let mut r = Reader::new("download request", &body);
        let (offset, length) = match (r.len_field("offset"), r.len_field("length")) {
            (Ok(o), Ok(l)) => (o, l),
            _ => {
                return self
                    .refuse(h, errno::EINVAL, "negative offset or length")
                    .await
            }
        };
        let name = match self.group_and_name(&body, 16) {
            Ok(n) => n,
            Err(why) => return self.refuse(h, errno::EINVAL, &why).await,
        };
        let name = match Self::read_name(name) {
            Ok(n) => n,
            Err(why) => {
                self.stats_op(idx::TOTAL_DOWNLOAD, false, None);
                return self.refuse(h, errno::ENOENT, &why).await;
            }
        };
        self.note_file(&name);
        let store = self.svc.store.clone();
        let (mut file, start, count) =
            match maybe_blocking(true, || store.open_read(&name, offset, length)) {
                Ok(x) => x,
                Err(e) => {
                    self.stats_op(idx::TOTAL_DOWNLOAD, false, None);
                    return self.store_err(h, &e).await;
                }
            };
        let header = Header::response(errno::OK, count).encode();
        let mut sent = Sent::Nothing;
        if count >= SENDFILE_MIN {
            sent = self.send_file(&header, &file, start, count).await?;
        }
        let sent = match sent {
            Sent::All => Ok(()),
            Sent::Nothing => self.copy_content(Some(&header), &mut file, count).await?,
            // sendfile refused this file before any content: the header is
            // out, copy the content after it.
            Sent::HeaderOnly => self.copy_content(None, &mut file, count).await?,
            Sent::Short(why) => Err((true, why)),
        };
        if let Err((started, why)) = sent {
            self.stats_op(idx::TOTAL_DOWNLOAD, false, None);
            if !started {
                return self.refuse(h, errno::EIO, &format!("{name}: {why}")).await;
            }
            // Part of the reply is out and cannot be completed: the
            // connection must go.
            warn!(peer = %self.conn.peer(), file = %name, error = %why, "download: file read failed mid-stream, closing");
            return Ok(Flow::Close);
        }
        self.stats_op(
            idx::TOTAL_DOWNLOAD,
            true,
            Some((idx::TOTAL_DOWNLOAD_BYTES, count)),
        );
        Ok(Flow::Continue)
    }

    /// Copies `count` bytes of `file` (from its position) to the peer,
    /// after `header` if given: the header and the first chunk leave in one
    /// write, so a small file costs a single send. `Err((started, why))`: a
    /// read failed, after part of the reply was sent if `started`.
    async fn copy_content(
        &mut self,
        header: Option<&[u8]>,
        file: &mut std::fs::File,
        count: u64,
    ) -> Result<Result<(), (bool, String)>, ConnError> {
        if self.buf.len() < CHUNK {
            self.buf = vec![0u8; CHUNK];
        }
        let mut filled = 0;
        if let Some(h) = header {
            self.buf[..h.len()].copy_from_slice(h);
            filled = h.len();
        }
        let mut left = count;
        let mut started = header.is_none();
        loop {
            let want = left.min((CHUNK - filled) as u64) as usize;
            if want > 0 {
                let buf = &mut self.buf[filled..filled + want];
                match maybe_blocking(want as u64 <= SMALL, || file.read(buf)) {
                    Ok(n) if n > 0 => {
                        filled += n;
                        left -= n as u64;
                    }
                    Ok(_) => return Ok(Err((started, SHRANK.to_owned()))),
                    Err(e) => return Ok(Err((started, e.to_string()))),
                }
            }
            self.conn.write_all(&self.buf[..filled]).await?;
            started = true;
            filled = 0;
            if left == 0 {
                return Ok(Ok(()));
            }
        }
    }

    /// Sends `header` then `count` bytes of `file` from `offset` with
    /// sendfile(2); the header leaves with the first content segment.
    async fn send_file(
        &mut self,
        header: &[u8],
        file: &std::fs::File,
        offset: u64,
        count: u64,
    ) -> Result<Sent, ConnError> {
        self.conn.write_more(header).await?;
        let mut off = offset;
        let mut left = count;
        while left > 0 {
            let want = left.min(SENDFILE_CHUNK) as usize;
            // Big calls may wait for the disk: off the async worker.
            let conn = &self.conn;
            let r = maybe_blocking(want as u64 <= SMALL, || {
                conn.try_sendfile(file, &mut off, want)
            });
            match r {
                Ok(0) => return Ok(Sent::Short(SHRANK.to_owned())),
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.conn.writable().await?
                }
                Err(e)
                    if left == count
                        && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
                {
                    return Ok(Sent::HeaderOnly)
                }
                // The socket or the file failed: either way the reply
                // cannot be completed.
                Err(e) => return Ok(Sent::Short(e.to_string())),
            }
        }
        Ok(Sent::All)
    }

    // ---- DELETE_FILE (12) ----
    async fn delete(&mut self, h: Header) -> Res {
        let Some(body) = self.small_body(h).await? else {
            return Ok(Flow::Close);
        };
        let name = match self.group_and_name(&body, 0).and_then(Self::read_name) {
            Ok(n) => n,
            Err(why) => {
                self.stats_op(idx::TOTAL_DELETE, false, None);
                return self.refuse(h, errno::EINVAL, &why).await;
            }
        };
        self.note_file(&name);
        let store = self.svc.store.clone();
        let res = locked(&store, &name, |s| s.delete(&name)).await;
        if res.is_ok() {
            self.freed(&name);
        }
        self.stats_op(idx::TOTAL_DELETE, res.is_ok(), None);
        self.reply_empty(h, res).await
    }

    /// After a delete here: a packed file's slot goes back to the trunk
    /// server (peers only zero their copy of the slot).
    fn freed(&self, name: &LogicName) {
        if let Some(info) = fdfs_proto::trunk::TrunkInfo::of_name(name) {
            if self.svc.trunk.packing() {
                // The client need not wait for it: at worst (a crash before
                // it is sent) the slot stays taken.
                let trunk = self.svc.trunk.clone();
                tokio::spawn(async move { trunk.free(info).await });
            }
        }
    }

    // ---- the trunk commands (§6.6) ----

    /// Reads and decodes a trunk request from a storage of our group;
    /// `Err(flow)` when it was refused (already answered).
    async fn trunk_req<T>(
        &mut self,
        h: Header,
        decode: fn(&[u8]) -> Result<T, fdfs_proto::DecodeError>,
        group: fn(&T) -> &GroupName,
    ) -> Result<Result<T, Flow>, ConnError> {
        let Some(body) = self.small_body(h).await? else {
            return Ok(Err(Flow::Close));
        };
        let why = match decode(&body) {
            Ok(r) if self.group_ok(group(&r)) => return Ok(Ok(r)),
            Ok(r) => format!("group {}", group(&r)),
            Err(e) => e.to_string(),
        };
        self.refuse(h, errno::EINVAL, &why).await.map(Err)
    }

    /// TRUNK_ALLOC_SPACE (27), from a storage of our group.
    async fn trunk_alloc(&mut self, h: Header) -> Res {
        let req = match self
            .trunk_req(h, fdfs_proto::trunk::AllocReq::decode, |r| &r.group)
            .await?
        {
            Ok(r) => r,
            Err(flow) => return Ok(flow),
        };
        match self.svc.trunk.serve_alloc(req.store_path, req.size).await {
            Ok(info) => {
                let mut out = Vec::with_capacity(fdfs_proto::trunk::TrunkInfo::LEN);
                info.encode(&mut out);
                self.conn.send(errno::OK, &out).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.refuse(h, e.status(), &e.to_string()).await,
        }
    }

    /// TRUNK_ALLOC_CONFIRM (28) and TRUNK_FREE_SPACE (29).
    async fn trunk_slot(&mut self, h: Header) -> Res {
        let req = match self
            .trunk_req(h, fdfs_proto::trunk::SlotReq::decode, |r| &r.group)
            .await?
        {
            Ok(r) => r,
            Err(flow) => return Ok(flow),
        };
        let trunk = &self.svc.trunk;
        let r = match (h.cmd, h.status) {
            (cmd::storage::TRUNK_FREE_SPACE, _) => trunk.serve_free(req.info).await,
            (_, errno::OK) => trunk.serve_confirm(req.info, true).await,
            // The slot held a file on the writer's disk: it stays taken.
            (_, errno::EEXIST) => trunk.serve_confirm(req.info, true).await,
            _ => trunk.serve_confirm(req.info, false).await,
        };
        match r {
            Ok(()) => {
                self.conn.send_status(errno::OK).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.refuse(h, e.status(), &e.to_string()).await,
        }
    }

    /// TRUNK_SYNC_BINLOG (30), TRUNK_GET_BINLOG_SIZE (31),
    /// TRUNK_DELETE_BINLOG_MARKS (32), TRUNK_TRUNCATE_BINLOG_FILE (33).
    async fn trunk_binlog(&mut self, h: Header) -> Res {
        use cmd::storage as s;
        let Some(body) = self.small_body(h).await? else {
            return Ok(Flow::Close);
        };
        let trunk = self.svc.trunk.clone();
        let r = match h.cmd {
            s::TRUNK_SYNC_BINLOG => blocking(|| trunk.append_binlog(&body)).map(|()| Vec::new()),
            s::TRUNK_GET_BINLOG_SIZE if body.is_empty() => {
                Ok((trunk.binlog_size() as i64).to_be_bytes().to_vec())
            }
            // We keep no per-peer marks of the trunk binlog.
            s::TRUNK_DELETE_BINLOG_MARKS if body.is_empty() => Ok(Vec::new()),
            s::TRUNK_TRUNCATE_BINLOG_FILE if body.is_empty() => {
                blocking(|| trunk.truncate_binlog()).map(|()| Vec::new())
            }
            _ => Err(crate::trunk::TrunkError::Invalid(format!(
                "{} with a body of {} bytes",
                cmd::name(h.cmd),
                body.len()
            ))),
        };
        match r {
            Ok(out) => {
                self.conn.send(errno::OK, &out).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.refuse(h, e.status(), &e.to_string()).await,
        }
    }

    // ---- SET_METADATA (13) ----
    async fn set_metadata(&mut self, h: Header) -> Res {
        let req = match self.small_req(h, SetMetadataReq::decode).await? {
            Ok(r) => r,
            Err(flow) => return Ok(flow),
        };
        if !self.group_ok(&req.group) {
            let why = format!("group {} is not ours", req.group);
            return self.refuse(h, errno::EINVAL, &why).await;
        }
        self.note_file(&req.filename);
        let store = self.svc.store.clone();
        let res = locked(&store, &req.filename, |s| {
            s.set_metadata(&req.filename, req.op, &req.meta)
        })
        .await;
        self.stats_op(idx::TOTAL_SET_META, res.is_ok(), None);
        self.reply_empty(h, res).await
    }

    // ---- GET_METADATA (15) ----
    async fn get_metadata(&mut self, h: Header) -> Res {
        let Some(body) = self.small_body(h).await? else {
            return Ok(Flow::Close);
        };
        let name = match self.group_and_name(&body, 0) {
            Ok(n) => n,
            Err(why) => return self.refuse(h, errno::EINVAL, &why).await,
        };
        self.note_file(&String::from_utf8_lossy(name));
        let res = Self::read_name(name)
            .map_err(StoreError::NotFound)
            .and_then(|n| blocking(|| self.svc.store.get_metadata(&n)));
        self.stats_op(idx::TOTAL_GET_META, res.is_ok(), None);
        match res {
            Ok(meta) => {
                self.conn.send(errno::OK, &meta).await?;
                Ok(Flow::Continue)
            }
            Err(e) => self.store_err(h, &e).await,
        }
    }

    // ---- QUERY_FILE_INFO (22) ----
    async fn query_file_info(&mut self, h: Header) -> Res {
        let Some(body) = self.small_body(h).await? else {
            return Ok(Flow::Close);
        };
        let name = match self.group_and_name(&body, 0) {
            Ok(n) => n,
            Err(why) => return self.refuse(h, errno::EINVAL, &why).await,
        };
        self.note_file(&String::from_utf8_lossy(name));
        let no_crc = h.status & fdfs_proto::storage::file_info_flags::NO_CRC != 0;
        let res = Self::read_name(name)
            .map_err(StoreError::NotFound)
            .and_then(|n| {
                blocking(|| self.svc.store.file_info(&n, no_crc)).map(|i| (i, n.info.source))
            });
        match res {
            Ok((mut info, source)) => {
                // A name made with a server id: its address is the one our
                // group's list gives that id ("" while unknown).
                if let SourceServer::Id(n) = source {
                    info.source_ip = self
                        .svc
                        .reporter
                        .address_of(&n.to_string())
                        .unwrap_or_default();
                }
                let mut out = Vec::with_capacity(40);
                FileInfoResp {
                    file_size: info.size,
                    create_timestamp: info.mtime,
                    crc32: info.crc32,
                    source_ip: info.source_ip,
                    ip_size: IpSize::V4,
                }
                .encode(&mut out);
                self.conn.send(errno::OK, &out).await?;
                Ok(Flow::Continue)
            }
            Err(e) => {
                if h.status & fdfs_proto::storage::file_info_flags::QUIET != 0 {
                    self.note.status = e.status();
                    self.conn.send_status(e.status()).await?;
                    return Ok(if e.status() == errno::EINVAL {
                        Flow::Close
                    } else {
                        Flow::Continue
                    });
                }
                self.store_err(h, &e).await
            }
        }
    }
}

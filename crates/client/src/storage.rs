//! Storage commands (PROTOCOL.md §4), each preceded by the tracker query
//! upstream clients use (§11): 101/104 before an upload, 102 before a read,
//! 103 before a change.

use std::net::SocketAddr;
use std::path::Path;

use fdfs_proto::cmd::{self, storage as s};
use fdfs_proto::file_id::{validate_ext, validate_prefix, FileKind, MAX_EXT_LEN};
use fdfs_proto::metadata::{self, MetaPair};
use fdfs_proto::storage::{
    file_info_flags, AppendHead, DownloadReq, FileIdResp, FileInfoResp, MetaOp, ModifyHead,
    RegenerateReq, SetMetadataReq, SlaveUpload, TruncateReq, UploadHead,
};
use fdfs_proto::FileId;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{PooledConn, REPLY_LIMIT};
use crate::{decode_err, file_req_body, parse_id, Client, Error, Result};

/// How and where to upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Extension without the dot (at most 6 of `[A-Za-z0-9_.-]`), or empty.
    pub ext: String,
    /// Upload an appender file (23) instead of a normal one (11).
    pub appender: bool,
    /// Ask the tracker for a server of this group (104) instead of any (101).
    pub group: Option<String>,
    /// Skip the tracker and upload to this storage. `None` as the path index
    /// lets the storage choose (sends -1).
    pub storage: Option<(SocketAddr, Option<u8>)>,
}

impl UploadOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ext(mut self, ext: impl Into<String>) -> Self {
        self.ext = ext.into();
        self
    }

    pub fn appender(mut self) -> Self {
        self.appender = true;
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    pub fn storage(mut self, server: SocketAddr, store_path_index: Option<u8>) -> Self {
        self.storage = Some((server, store_path_index));
        self
    }
}

/// The extension upstream tools would send for a local file name: the text
/// after the last dot of the base name, if it is a valid extension (at most
/// 6 of `[A-Za-z0-9_-]`); otherwise none, rather than a truncated one.
pub fn ext_of_path(path: &Path) -> String {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return String::new();
    };
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && validate_ext(ext).is_ok() => ext.to_owned(),
        _ => String::new(),
    }
}

fn check_ext(ext: &str) -> Result<&str> {
    let ext = ext.strip_prefix('.').unwrap_or(ext);
    if ext.len() > MAX_EXT_LEN {
        return Err(Error::InvalidArgument(format!(
            "extension {ext:?} is longer than {MAX_EXT_LEN} characters"
        )));
    }
    validate_ext(ext).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(ext)
}

fn local(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Local { what, source }
}

fn require_appender(id: &FileId) -> Result<()> {
    if id.logic.kind != FileKind::Appender {
        return Err(Error::InvalidArgument(format!(
            "{id} is not an appender file (upload it with the appender flag)"
        )));
    }
    Ok(())
}

/// The new file id in a reply to `code` (upload, slave upload, regenerate).
fn file_id_reply(code: u8, server: SocketAddr, reply: &[u8]) -> Result<FileId> {
    let r = FileIdResp::decode(reply).map_err(decode_err(code, server))?;
    Ok(FileId {
        group: r.group,
        logic: r.filename,
    })
}

async fn open_source(path: &Path) -> Result<(tokio::fs::File, u64)> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(local(format!("cannot open {}", path.display())))?;
    let meta = f
        .metadata()
        .await
        .map_err(local(format!("cannot stat {}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Local {
            what: format!("{} is not a regular file", path.display()),
            source: std::io::ErrorKind::InvalidInput.into(),
        });
    }
    Ok((f, meta.len()))
}

impl Client {
    // ---------------------------------------------------------------- upload

    /// Uploads an in-memory body; returns the new file id.
    pub async fn upload(&self, data: impl AsRef<[u8]>, opts: &UploadOptions) -> Result<FileId> {
        let data = data.as_ref();
        let mut src = data;
        self.upload_reader(&mut src, data.len() as u64, opts).await
    }

    /// Uploads a local file, streamed. When `opts.ext` is empty the
    /// extension comes from the file name ([`ext_of_path`]).
    pub async fn upload_path(
        &self,
        path: impl AsRef<Path>,
        opts: &UploadOptions,
    ) -> Result<FileId> {
        let path = path.as_ref();
        let (mut f, size) = open_source(path).await?;
        let mut opts = opts.clone();
        if opts.ext.is_empty() {
            opts.ext = ext_of_path(path);
        }
        self.upload_reader(&mut f, size, &opts).await
    }

    /// Uploads exactly `size` bytes read from `src`, streamed.
    pub async fn upload_reader<R: AsyncRead + Unpin + ?Sized>(
        &self,
        src: &mut R,
        size: u64,
        opts: &UploadOptions,
    ) -> Result<FileId> {
        let ext = check_ext(&opts.ext)?.to_owned();
        let (server, path_index) = match opts.storage {
            Some((server, idx)) => (server, idx.map_or(-1, |i| i as i8)),
            None => {
                let t = self.query_store(opts.group.as_deref()).await?;
                (t.server, t.store_path_index as i8)
            }
        };
        let code = if opts.appender {
            s::UPLOAD_APPENDER_FILE
        } else {
            s::UPLOAD_FILE
        };
        let mut head = Vec::with_capacity(UploadHead::LEN);
        UploadHead {
            store_path_index: path_index,
            file_size: size,
            ext,
        }
        .encode(&mut head);
        let reply = self.send_streamed(server, code, &head, src, size).await?;
        file_id_reply(code, server, &reply)
    }

    /// Sends `head` followed by `size` bytes streamed from `src`; returns
    /// the reply body.
    async fn send_streamed<R: AsyncRead + Unpin + ?Sized>(
        &self,
        server: SocketAddr,
        code: u8,
        head: &[u8],
        src: &mut R,
        size: u64,
    ) -> Result<Vec<u8>> {
        let op = cmd::name(code);
        let mut c = self.conn_checked(server, op).await?;
        c.send_head(code, 0, head.len() as u64 + size, head).await?;
        c.send_stream(op, src, size).await?;
        let h = c.recv_header(op, REPLY_LIMIT).await?;
        c.recv_body(op, h.pkg_len).await
    }

    /// Parses `appender_id` and checks that it names an appender file; the id
    /// and the storage to send the change to (103).
    async fn appender_target(&self, appender_id: &str) -> Result<(FileId, SocketAddr)> {
        let id = parse_id(appender_id)?;
        require_appender(&id)?;
        let server = self.query_update_id(&id).await?;
        Ok((id, server))
    }

    /// Uploads a slave file of `master` (21) from memory. The slave's name is
    /// the master's with `prefix` and `ext` (PROTOCOL.md §5.4).
    pub async fn upload_slave(
        &self,
        master: &str,
        prefix: &str,
        ext: &str,
        data: impl AsRef<[u8]>,
    ) -> Result<FileId> {
        let data = data.as_ref();
        let mut src = data;
        self.upload_slave_reader(master, prefix, ext, &mut src, data.len() as u64)
            .await
    }

    /// Uploads a slave file from a local file, streamed.
    pub async fn upload_slave_path(
        &self,
        master: &str,
        prefix: &str,
        ext: &str,
        path: impl AsRef<Path>,
    ) -> Result<FileId> {
        let (mut f, size) = open_source(path.as_ref()).await?;
        self.upload_slave_reader(master, prefix, ext, &mut f, size)
            .await
    }

    /// Uploads a slave file of exactly `size` bytes from `src`, streamed.
    pub async fn upload_slave_reader<R: AsyncRead + Unpin + ?Sized>(
        &self,
        master: &str,
        prefix: &str,
        ext: &str,
        src: &mut R,
        size: u64,
    ) -> Result<FileId> {
        let id = parse_id(master)?;
        let ext = check_ext(ext)?;
        validate_prefix(prefix).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        // Catches every naming rule (master kind, "-m" without ext) locally.
        id.logic
            .slave(prefix, ext)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let server = self.query_update_id(&id).await?;
        let req = SlaveUpload {
            master: id.logic.clone(),
            file_size: size,
            prefix: prefix.to_owned(),
            ext: ext.to_owned(),
        };
        let mut head = Vec::with_capacity(req.prefix_len());
        req.encode(&mut head);
        let reply = self
            .send_streamed(server, s::UPLOAD_SLAVE_FILE, &head, src, size)
            .await?;
        file_id_reply(s::UPLOAD_SLAVE_FILE, server, &reply)
    }

    // -------------------------------------------------------------- download

    /// Downloads a whole file into memory.
    pub async fn download(&self, file_id: &str) -> Result<Vec<u8>> {
        self.download_range(file_id, 0, 0).await
    }

    /// Downloads `length` bytes from `offset` (length 0 = to the end).
    pub async fn download_range(&self, file_id: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let (mut c, h, op) = self.start_download(file_id, offset, length).await?;
        // The reply announces its size: read straight into a buffer of that
        // size instead of growing one chunk by chunk.
        c.recv_body(op, h.pkg_len).await
    }

    /// Streams a file (or a range, length 0 = to the end) into `dst`;
    /// returns the number of bytes written.
    pub async fn download_to_writer<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        file_id: &str,
        offset: u64,
        length: u64,
        dst: &mut W,
    ) -> Result<u64> {
        let (mut c, h, op) = self.start_download(file_id, offset, length).await?;
        c.recv_stream(op, h.pkg_len, dst).await?;
        Ok(h.pkg_len)
    }

    /// Sends DOWNLOAD_FILE and reads the reply header; the content follows
    /// on the returned connection.
    async fn start_download(
        &self,
        file_id: &str,
        offset: u64,
        length: u64,
    ) -> Result<(PooledConn, fdfs_proto::Header, &'static str)> {
        let code = s::DOWNLOAD_FILE;
        let id = parse_id(file_id)?;
        let server = self.query_fetch_id(&id).await?;
        let mut body = Vec::new();
        DownloadReq {
            offset,
            length,
            group: id.group.clone(),
            filename: id.logic.clone(),
        }
        .encode(&mut body);
        // Downloads have no size limit beyond what the caller asked for.
        // Nothing reaches the caller before the header, so a stale pooled
        // connection can be retried.
        let (c, h) = self
            .exchange(
                server,
                crate::Req {
                    code,
                    status: 0,
                    body: &body,
                },
                i64::MAX as u64,
                true,
            )
            .await?;
        let op = cmd::name(code);
        if length > 0 && h.pkg_len > length {
            return Err(Error::Protocol {
                op,
                server,
                source: fdfs_proto::DecodeError::BadLength {
                    what: "download reply",
                    got: h.pkg_len.min(usize::MAX as u64) as usize,
                    expected: format!("at most {length}"),
                },
            });
        }
        Ok((c, h, op))
    }

    /// Downloads into a local file (created or truncated). On failure a
    /// partly written file is removed.
    pub async fn download_to_path(
        &self,
        file_id: &str,
        offset: u64,
        length: u64,
        path: impl AsRef<Path>,
    ) -> Result<u64> {
        let path = path.as_ref();
        parse_id(file_id)?;
        let mut f = tokio::fs::File::create(path)
            .await
            .map_err(local(format!("cannot create {}", path.display())))?;
        let r = self
            .download_to_writer(file_id, offset, length, &mut f)
            .await;
        drop(f);
        if r.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        r
    }

    // ---------------------------------------------------------------- delete

    /// Deletes a file (12).
    pub async fn delete(&self, file_id: &str) -> Result<()> {
        let id = parse_id(file_id)?;
        let server = self.query_update_id(&id).await?;
        self.call(server, s::DELETE_FILE, 0, &file_req_body(&id), false)
            .await?;
        Ok(())
    }

    // -------------------------------------------------------------- metadata

    /// Replaces (`MetaOp::Overwrite`) or merges into (`MetaOp::Merge`) the
    /// file's metadata (13). Overwrite with an empty list removes it.
    pub async fn set_metadata(
        &self,
        file_id: &str,
        meta: &[MetaPair],
        op_flag: MetaOp,
    ) -> Result<()> {
        let id = parse_id(file_id)?;
        if let Some(p) = meta.iter().find(|p| {
            p.name.is_empty()
                || p.name
                    .iter()
                    .chain(&p.value)
                    .any(|&c| c == metadata::RECORD_SEP || c == metadata::FIELD_SEP)
        }) {
            return Err(Error::InvalidArgument(format!(
                "metadata entry {:?} has an empty name or contains a separator byte",
                String::from_utf8_lossy(&p.name)
            )));
        }
        let server = self.query_update_id(&id).await?;
        let mut body = Vec::new();
        SetMetadataReq {
            op: op_flag,
            group: id.group.clone(),
            filename: id.logic.clone(),
            meta: metadata::encode(meta),
        }
        .encode(&mut body);
        self.call(server, s::SET_METADATA, 0, &body, false).await?;
        Ok(())
    }

    /// The file's metadata (15); ENOENT when it has none.
    pub async fn get_metadata(&self, file_id: &str) -> Result<Vec<MetaPair>> {
        let id = parse_id(file_id)?;
        let server = self.query_fetch_id(&id).await?;
        let body = self
            .call(server, s::GET_METADATA, 0, &file_req_body(&id), true)
            .await?;
        metadata::decode(&body).map_err(decode_err(s::GET_METADATA, server))
    }

    /// Size, creation time, CRC32 and source address as the storage reports
    /// them (22). The CRC32 of appender and slave files is computed by the
    /// storage (reads the whole file).
    pub async fn query_file_info(&self, file_id: &str) -> Result<FileInfoResp> {
        self.query_file_info_flags(file_id, 0).await
    }

    /// [`Client::query_file_info`] with flags ([`file_info_flags`]).
    pub async fn query_file_info_flags(&self, file_id: &str, flags: u8) -> Result<FileInfoResp> {
        let id = parse_id(file_id)?;
        let server = self.query_fetch_id(&id).await?;
        let body = self
            .call(
                server,
                s::QUERY_FILE_INFO,
                flags & (file_info_flags::NO_CRC | file_info_flags::QUIET),
                &file_req_body(&id),
                true,
            )
            .await?;
        FileInfoResp::decode(&body).map_err(decode_err(s::QUERY_FILE_INFO, server))
    }

    // --------------------------------------------------------- appender files

    /// Appends an in-memory body to an appender file (24).
    pub async fn append(&self, appender_id: &str, data: impl AsRef<[u8]>) -> Result<()> {
        let data = data.as_ref();
        let mut src = data;
        self.append_reader(appender_id, &mut src, data.len() as u64)
            .await
    }

    /// Appends a local file, streamed.
    pub async fn append_path(&self, appender_id: &str, path: impl AsRef<Path>) -> Result<()> {
        let (mut f, size) = open_source(path.as_ref()).await?;
        self.append_reader(appender_id, &mut f, size).await
    }

    /// Appends exactly `size` bytes from `src`, streamed.
    pub async fn append_reader<R: AsyncRead + Unpin + ?Sized>(
        &self,
        appender_id: &str,
        src: &mut R,
        size: u64,
    ) -> Result<()> {
        let (id, server) = self.appender_target(appender_id).await?;
        let mut head = Vec::new();
        AppendHead::encode(&id.logic, size, &mut head);
        self.send_streamed(server, s::APPEND_FILE, &head, src, size)
            .await?;
        Ok(())
    }

    /// Overwrites part of an appender file at `offset` (34); may extend it.
    pub async fn modify(
        &self,
        appender_id: &str,
        offset: u64,
        data: impl AsRef<[u8]>,
    ) -> Result<()> {
        let data = data.as_ref();
        let mut src = data;
        self.modify_reader(appender_id, offset, &mut src, data.len() as u64)
            .await
    }

    /// [`Client::modify`] streaming exactly `size` bytes from `src`.
    pub async fn modify_reader<R: AsyncRead + Unpin + ?Sized>(
        &self,
        appender_id: &str,
        offset: u64,
        src: &mut R,
        size: u64,
    ) -> Result<()> {
        let (id, server) = self.appender_target(appender_id).await?;
        let mut head = Vec::new();
        ModifyHead::encode(&id.logic, offset, size, &mut head);
        self.send_streamed(server, s::MODIFY_FILE, &head, src, size)
            .await?;
        Ok(())
    }

    /// Sets an appender file's size (36); growing fills with zeros.
    pub async fn truncate(&self, appender_id: &str, new_size: u64) -> Result<()> {
        let (id, server) = self.appender_target(appender_id).await?;
        let mut body = Vec::new();
        TruncateReq {
            filename: id.logic.clone(),
            new_size,
        }
        .encode(&mut body);
        self.call(server, s::TRUNCATE_FILE, 0, &body, false).await?;
        Ok(())
    }

    /// Turns an appender file into a normal one under a new name (38);
    /// returns the new file id.
    pub async fn regenerate_appender_name(&self, appender_id: &str) -> Result<FileId> {
        let code = s::REGENERATE_APPENDER_FILENAME;
        let (id, server) = self.appender_target(appender_id).await?;
        let mut body = Vec::new();
        RegenerateReq {
            filename: id.logic.clone(),
        }
        .encode(&mut body);
        let reply = self.call(server, code, 0, &body, false).await?;
        file_id_reply(code, server, &reply)
    }
}

//! Unit tests against in-process fake trackers and storages: TCP listeners
//! on 127.0.0.1:0 answering canned frames built with fdfs_proto.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fdfs_proto::cmd::{self, storage as sc, tracker as tc};
use fdfs_proto::common::ServerAddr;
use fdfs_proto::file_id::{ext_part, LogicName, NameInfo, SourceServer};
use fdfs_proto::storage::{
    DownloadReq, FileIdResp, FileInfoResp, SlaveUpload, SlaveUploadHead, UploadHead,
};
use fdfs_proto::tracker::{FetchResp, GroupStat, StoreResp};
use fdfs_proto::{GroupName, Header, IpSize, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;

use crate::{Client, ClientOptions, Error, MetaOp, MetaPair, UploadOptions};

#[derive(Debug, Clone)]
struct Req {
    cmd: u8,
    status: u8,
    body: Vec<u8>,
}

enum Reply {
    Ok(Vec<u8>),
    Status(u8),
    /// Answer, then close the connection.
    OkThenClose(Vec<u8>),
    /// Never answer (timeout tests).
    Silent,
    /// These bytes as they are (a header that lies, trailing garbage),
    /// then close the connection.
    RawThenClose(Vec<u8>),
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

struct Fake {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn cmds(&self) -> Vec<u8> {
        self.log.lock().unwrap().iter().map(|r| r.cmd).collect()
    }
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
    fn last(&self, code: u8) -> Req {
        self.log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.cmd == code)
            .cloned()
            .expect("request seen")
    }
}

async fn fake(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Fake {
    let handler: Handler = Arc::new(handler);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (a, g) = (accepts.clone(), log.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let (h, g) = (handler.clone(), g.clone());
            tokio::spawn(async move {
                loop {
                    let mut hb = [0u8; HEADER_LEN];
                    if s.read_exact(&mut hb).await.is_err() {
                        return;
                    }
                    let hd = Header::decode(&hb, 1 << 30).unwrap();
                    let mut body = vec![0u8; hd.pkg_len as usize];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let req = Req {
                        cmd: hd.cmd,
                        status: hd.status,
                        body,
                    };
                    g.lock().unwrap().push(req.clone());
                    let (st, b, close) = match h(&req) {
                        Reply::Ok(b) => (0, b, false),
                        Reply::OkThenClose(b) => (0, b, true),
                        Reply::Status(e) => (e, Vec::new(), e == 22),
                        Reply::Silent => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Reply::RawThenClose(raw) => {
                            let _ = s.write_all(&raw).await;
                            return;
                        }
                    };
                    let mut out = Header::response(st, b.len() as u64).encode().to_vec();
                    out.extend_from_slice(&b);
                    if s.write_all(&out).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Fake { addr, accepts, log }
}

/// A port where nothing listens (bound, then released).
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn group() -> GroupName {
    GroupName::new("group1").unwrap()
}

fn store_reply(storage: SocketAddr, path: u8) -> Vec<u8> {
    let mut b = Vec::new();
    StoreResp {
        group: group(),
        server: ServerAddr {
            ip: storage.ip().to_string(),
            port: storage.port(),
        },
        store_path_index: path,
        ip_size: IpSize::V4,
    }
    .encode(&mut b);
    b
}

fn fetch_reply(storage: SocketAddr) -> Vec<u8> {
    let mut b = Vec::new();
    FetchResp {
        group: group(),
        servers: vec![ServerAddr {
            ip: storage.ip().to_string(),
            port: storage.port(),
        }],
        ip_size: IpSize::V4,
    }
    .encode(&mut b);
    b
}

fn name_for(size: u64, crc: u32, appender: bool, ext: &str) -> LogicName {
    let info = NameInfo {
        source: SourceServer::Ip(Ipv4Addr::new(127, 0, 0, 1)),
        timestamp: 1_700_000_000,
        size_field: NameInfo::size_field_for(size, appender, 77),
        crc32: crc,
    };
    LogicName::build(0, 0, 0x1A, info, None, &ext_part(ext, 4242).unwrap())
}

fn id_reply(name: &LogicName) -> Vec<u8> {
    let mut b = Vec::new();
    FileIdResp {
        group: group(),
        filename: name.clone(),
    }
    .encode(&mut b);
    b
}

/// A tracker that routes every query to `storage`.
async fn tracker_for(storage: SocketAddr) -> Fake {
    fake(move |r| match r.cmd {
        tc::QUERY_STORE_WITHOUT_GROUP_ONE | tc::QUERY_STORE_WITH_GROUP_ONE => {
            Reply::Ok(store_reply(storage, 0))
        }
        tc::QUERY_FETCH_ONE | tc::QUERY_UPDATE => Reply::Ok(fetch_reply(storage)),
        cmd::ACTIVE_TEST => Reply::Ok(Vec::new()),
        _ => Reply::Status(22),
    })
    .await
}

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        network_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A reader that hands out at most 1000 bytes per read, so uploads must
/// loop rather than rely on one big buffer.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (self.data.len() - self.pos).min(1000).min(buf.remaining());
        let p = self.pos;
        buf.put_slice(&self.data[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// A writer that only hashes and counts what it receives.
#[derive(Default)]
struct Hashing {
    crc: crc32fast::Hasher,
    len: u64,
}

impl AsyncWrite for Hashing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.crc.update(buf);
        self.len += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn list_groups_reply() -> Vec<u8> {
    let mut b = Vec::new();
    GroupStat {
        group_name: "group1".into(),
        total_mb: 100,
        free_mb: 50,
        storage_count: 1,
        storage_port: 23000,
        ..GroupStat::default()
    }
    .encode(&mut b);
    b
}

#[tokio::test]
async fn fails_over_to_the_next_tracker_and_rotates() {
    let dead = dead_addr().await;
    let t = fake(|r| match r.cmd {
        tc::SERVER_LIST_ALL_GROUPS => Reply::Ok(list_groups_reply()),
        _ => Reply::Status(22),
    })
    .await;
    let c = Client::new(vec![dead, t.addr], opts()).unwrap();
    for _ in 0..3 {
        let g = c.list_groups().await.unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].group_name, "group1");
        assert_eq!(g[0].free_mb, 50);
    }
    assert_eq!(t.cmds(), vec![tc::SERVER_LIST_ALL_GROUPS; 3]);

    // Two live trackers: consecutive queries alternate between them.
    let t2 = fake(|_| Reply::Ok(list_groups_reply())).await;
    let c = Client::new(vec![t.addr, t2.addr], opts()).unwrap();
    c.list_groups().await.unwrap();
    c.list_groups().await.unwrap();
    assert_eq!(t.cmds().len(), 4);
    assert_eq!(t2.cmds().len(), 1);

    // Nobody reachable: the error names the last tracker tried.
    let dead2 = dead_addr().await;
    let c = Client::new(vec![dead, dead2], opts()).unwrap();
    let e = c.list_groups().await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(e.server() == Some(dead) || e.server() == Some(dead2));
}

#[tokio::test]
async fn tracker_status_errors_do_not_fail_over() {
    let t1 = fake(|_| Reply::Status(2)).await;
    let t2 = fake(|_| Reply::Ok(list_groups_reply())).await;
    let c = Client::new(vec![t1.addr, t2.addr], opts()).unwrap();
    let e = c.query_store(Some("nogroup")).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.server(), Some(t1.addr));
    assert!(t2.cmds().is_empty());
}

#[tokio::test]
async fn pool_reuses_connections_and_tests_idle_ones() {
    let t = fake(|r| match r.cmd {
        cmd::ACTIVE_TEST => Reply::Ok(Vec::new()),
        _ => Reply::Ok(list_groups_reply()),
    })
    .await;
    // Fresh connections are reused without a test.
    let c = Client::new(vec![t.addr], opts()).unwrap();
    c.list_groups().await.unwrap();
    c.list_groups().await.unwrap();
    assert_eq!(t.accepts(), 1);
    assert_eq!(t.cmds(), vec![91, 91]);
    assert_eq!(c.inner.pool.idle_count(t.addr), 1);

    // Idle longer than active_test_after: ACTIVE_TEST first, same socket.
    let c = Client::new(
        vec![t.addr],
        ClientOptions {
            active_test_after: Duration::from_millis(20),
            ..opts()
        },
    )
    .unwrap();
    c.list_groups().await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    c.list_groups().await.unwrap();
    assert_eq!(t.accepts(), 2);
    assert_eq!(t.cmds()[2..], [91, 111, 91]);

    // Pool off: one connection per request.
    let c = Client::new(
        vec![t.addr],
        ClientOptions {
            use_connection_pool: false,
            ..opts()
        },
    )
    .unwrap();
    c.list_groups().await.unwrap();
    c.list_groups().await.unwrap();
    assert_eq!(t.accepts(), 4);
    assert_eq!(c.inner.pool.idle_count(t.addr), 0);
}

#[tokio::test]
async fn stale_pooled_connection_is_replaced() {
    // The server closes after every answer; the pooled socket is dead.
    let t = fake(|_| Reply::OkThenClose(list_groups_reply())).await;
    let c = Client::new(
        vec![t.addr],
        ClientOptions {
            active_test_after: Duration::ZERO,
            ..opts()
        },
    )
    .unwrap();
    c.list_groups().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.list_groups().await.unwrap();
    assert_eq!(t.accepts(), 2);
}

#[tokio::test]
async fn errored_connections_are_not_pooled() {
    let st = fake(|r| match r.cmd {
        sc::DELETE_FILE => Reply::Status(22),
        sc::GET_METADATA => Reply::Status(2),
        _ => Reply::Ok(Vec::new()),
    })
    .await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let id = format!("group1/{}", name_for(5, 1, false, "txt"));
    // EINVAL: the storage closes, so the client must not keep the socket.
    let e = c.delete(&id).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert_eq!(c.inner.pool.idle_count(st.addr), 0);
    // ENOENT with an empty body: the connection stays usable.
    let e = c.get_metadata(&id).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(c.inner.pool.idle_count(st.addr), 1);
    assert_eq!(st.accepts(), 2);
}

#[tokio::test]
async fn status_errors_keep_errno_and_server() {
    let st = fake(|_| Reply::Status(2)).await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let id = format!("group1/{}", name_for(5, 1, false, "txt"));
    let e = c.download(&id).await.unwrap_err();
    match &e {
        Error::Status { op, errno, server } => {
            assert_eq!(*op, "DOWNLOAD_FILE");
            assert_eq!(*errno, 2);
            assert_eq!(*server, st.addr);
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("ENOENT (errno 2)") && msg.contains(&st.addr.to_string()),
        "{msg}"
    );

    // A failed download to a path leaves no file behind.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    assert!(c
        .download_to_path(&id, 0, 0, &p)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(!p.exists());

    for (errno, check) in [
        (17u8, Error::is_already_exists as fn(&Error) -> bool),
        (28, Error::is_no_space),
        (16, Error::is_busy),
    ] {
        let st = fake(move |_| Reply::Status(errno)).await;
        let t = tracker_for(st.addr).await;
        let c = Client::new(vec![t.addr], opts()).unwrap();
        let e = c.upload(b"x", &UploadOptions::new()).await.unwrap_err();
        assert!(check(&e), "errno {errno}: {e}");
    }
}

#[tokio::test]
async fn bad_ids_are_refused_before_any_io() {
    let t = fake(|_| Reply::Status(22)).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    for bad in [
        "",
        "group1",
        "group1/M00/00/00/short.txt",
        "gr_p/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        "group1/../../etc/passwd",
    ] {
        let e = c.download(bad).await.unwrap_err();
        assert!(matches!(e, Error::BadFileId { .. }), "{bad}: {e:?}");
        assert!(c.delete(bad).await.is_err());
    }
    // Appender operations on a normal file id are refused locally too.
    let normal = format!("group1/{}", name_for(5, 1, false, "txt"));
    assert!(c
        .append(&normal, b"x")
        .await
        .unwrap_err()
        .is_invalid_argument());
    assert!(c
        .truncate(&normal, 0)
        .await
        .unwrap_err()
        .is_invalid_argument());
    // So are extensions the protocol cannot carry.
    assert!(c
        .upload(b"x", &UploadOptions::new().ext("toolong7"))
        .await
        .unwrap_err()
        .is_invalid_argument());
    assert_eq!(t.accepts(), 0);
}

#[tokio::test]
async fn network_timeout_is_reported() {
    let t = fake(|_| Reply::Silent).await;
    let c = Client::new(
        vec![t.addr],
        ClientOptions {
            network_timeout: Duration::from_millis(150),
            ..opts()
        },
    )
    .unwrap();
    let e = c.list_groups().await.unwrap_err();
    assert!(
        matches!(e, Error::Timeout { server, .. } if server == t.addr),
        "{e:?}"
    );
}

/// A storage keeping one file in memory: uploads store it, downloads serve
/// ranges of it.
async fn memory_storage() -> (Fake, Arc<Mutex<Vec<u8>>>) {
    let content = Arc::new(Mutex::new(Vec::new()));
    let c2 = content.clone();
    let st = fake(move |r| match r.cmd {
        sc::UPLOAD_FILE | sc::UPLOAD_APPENDER_FILE => {
            let head = UploadHead::decode(&r.body[..UploadHead::LEN], r.body.len() as u64).unwrap();
            let data = r.body[UploadHead::LEN..].to_vec();
            assert_eq!(data.len() as u64, head.file_size);
            let crc = crc32fast::hash(&data);
            *c2.lock().unwrap() = data;
            Reply::Ok(id_reply(&name_for(
                head.file_size,
                crc,
                r.cmd == sc::UPLOAD_APPENDER_FILE,
                &head.ext,
            )))
        }
        sc::DOWNLOAD_FILE => {
            let req = DownloadReq::decode(&r.body).unwrap();
            let data = c2.lock().unwrap();
            let start = req.offset as usize;
            if start >= data.len() {
                return Reply::Status(22);
            }
            let end = if req.length == 0 {
                data.len()
            } else {
                (start + req.length as usize).min(data.len())
            };
            Reply::Ok(data[start..end].to_vec())
        }
        sc::QUERY_FILE_INFO => {
            let data = c2.lock().unwrap();
            let mut b = Vec::new();
            FileInfoResp {
                file_size: data.len() as u64,
                create_timestamp: 1_700_000_000,
                crc32: crc32fast::hash(&data),
                source_ip: "127.0.0.1".into(),
                ip_size: IpSize::V4,
            }
            .encode(&mut b);
            Reply::Ok(b)
        }
        cmd::ACTIVE_TEST => Reply::Ok(Vec::new()),
        _ => Reply::Status(22),
    })
    .await;
    (st, content)
}

#[tokio::test]
async fn streams_multi_mib_upload_and_download() {
    let (st, stored) = memory_storage().await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let data = pattern(5 * 1024 * 1024 + 123);
    let mut src = Trickle {
        data: data.clone(),
        pos: 0,
    };
    let id = c
        .upload_reader(
            &mut src,
            data.len() as u64,
            &UploadOptions::new().ext("bin"),
        )
        .await
        .unwrap();
    assert_eq!(id.group.as_str(), "group1");
    assert_eq!(id.logic.ext(), "bin");
    assert_eq!(id.logic.info.file_size(), Some(data.len() as u64));
    assert!(*stored.lock().unwrap() == data);
    let head = st.last(sc::UPLOAD_FILE);
    assert_eq!(head.body[0], 0, "store path index from the tracker");

    // Whole download into a hashing writer (never a Vec).
    let mut w = Hashing::default();
    let n = c
        .download_to_writer(&id.to_string(), 0, 0, &mut w)
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(w.len, n);
    assert_eq!(w.crc.finalize(), crc32fast::hash(&data));

    // Ranges: middle, clamped tail, to the end.
    let sid = id.to_string();
    assert_eq!(
        c.download_range(&sid, 1000, 4096).await.unwrap(),
        data[1000..5096]
    );
    let tail = data.len() as u64 - 10;
    assert_eq!(
        c.download_range(&sid, tail, 100).await.unwrap(),
        data[tail as usize..]
    );
    assert_eq!(
        c.download_range(&sid, tail, 0).await.unwrap(),
        data[tail as usize..]
    );
    let req = DownloadReq::decode(&st.last(sc::DOWNLOAD_FILE).body).unwrap();
    assert_eq!((req.offset, req.length), (tail, 0));

    // To a path.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("copy.bin");
    c.download_to_path(&sid, 0, 0, &p).await.unwrap();
    assert!(std::fs::read(&p).unwrap() == data);

    // Upload from a path: extension from the file name; file info.
    let src_path = dir.path().join("pic.jpeg");
    std::fs::write(&src_path, &data[..1000]).unwrap();
    let id2 = c
        .upload_path(&src_path, &UploadOptions::new())
        .await
        .unwrap();
    assert_eq!(id2.logic.ext(), "jpeg");
    let info = c.query_file_info(&id2.to_string()).await.unwrap();
    assert_eq!(info.file_size, 1000);
    assert_eq!(info.crc32, crc32fast::hash(&data[..1000]));
    // All of the above went over one pooled storage connection; the second
    // upload checked it with ACTIVE_TEST first (a streamed body cannot be
    // resent).
    assert_eq!(st.accepts(), 1);
    let cmds = st.cmds();
    assert_eq!(
        cmds[cmds.len() - 3..],
        [cmd::ACTIVE_TEST, sc::UPLOAD_FILE, sc::QUERY_FILE_INFO]
    );
}

#[tokio::test]
async fn short_source_aborts_upload_and_drops_connection() {
    let (st, _) = memory_storage().await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let mut src: &[u8] = b"only ten b";
    let e = c
        .upload_reader(&mut src, 100, &UploadOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Local { .. }), "{e:?}");
    assert_eq!(c.inner.pool.idle_count(st.addr), 0);
}

#[tokio::test]
async fn direct_storage_upload_skips_the_tracker() {
    let (st, _) = memory_storage().await;
    let dead = dead_addr().await;
    let c = Client::new(vec![dead], opts()).unwrap();
    let id = c
        .upload(
            b"abc",
            &UploadOptions::new().storage(st.addr, None).appender(),
        )
        .await
        .unwrap();
    assert_eq!(id.logic.kind, fdfs_proto::FileKind::Appender);
    let r = st.last(sc::UPLOAD_APPENDER_FILE);
    assert_eq!(r.body[0], 0xFF, "storage chooses the path");
    c.upload(b"abc", &UploadOptions::new().storage(st.addr, Some(3)))
        .await
        .unwrap();
    assert_eq!(st.last(sc::UPLOAD_FILE).body[0], 3);
}

#[tokio::test]
async fn slave_metadata_and_appender_requests_are_well_formed() {
    let master = name_for(10, 5, false, "jpg");
    let appender = name_for(0, 5, true, "log");
    let m2 = master.clone();
    let st = fake(move |r| match r.cmd {
        sc::UPLOAD_SLAVE_FILE => {
            let head =
                SlaveUploadHead::decode(&r.body[..SlaveUploadHead::LEN], r.body.len() as u64)
                    .unwrap();
            let rest = &r.body[SlaveUploadHead::LEN..];
            let req = SlaveUpload::decode(head, &rest[..44]).unwrap();
            assert_eq!(&rest[44..], b"thumb");
            Reply::Ok(id_reply(&req.master.slave(&req.prefix, &req.ext).unwrap()))
        }
        sc::SET_METADATA => Reply::Ok(Vec::new()),
        sc::GET_METADATA => Reply::Ok(b"author\x02bob\x01width\x02100".to_vec()),
        sc::APPEND_FILE | sc::MODIFY_FILE | sc::TRUNCATE_FILE => Reply::Ok(Vec::new()),
        sc::REGENERATE_APPENDER_FILENAME => Reply::Ok(id_reply(&m2)),
        _ => Reply::Status(22),
    })
    .await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let mid = format!("group1/{master}");
    let slave = c
        .upload_slave(&mid, "_150x150", "png", b"thumb")
        .await
        .unwrap();
    assert_eq!(slave.logic, master.slave("_150x150", "png").unwrap());
    assert_eq!(t.last(tc::QUERY_UPDATE).cmd, tc::QUERY_UPDATE);

    let meta = vec![
        MetaPair::new("width", "100"),
        MetaPair::new("author", "bob"),
    ];
    c.set_metadata(&mid, &meta, MetaOp::Merge).await.unwrap();
    let req = fdfs_proto::storage::SetMetadataReq::decode(&st.last(sc::SET_METADATA).body).unwrap();
    assert_eq!(req.op, MetaOp::Merge);
    assert_eq!(req.meta, b"width\x02100\x01author\x02bob");
    let got = c.get_metadata(&mid).await.unwrap();
    assert_eq!(
        got,
        vec![
            MetaPair::new("author", "bob"),
            MetaPair::new("width", "100")
        ]
    );
    assert!(c
        .set_metadata(&mid, &[MetaPair::new("a\x01b", "c")], MetaOp::Overwrite)
        .await
        .unwrap_err()
        .is_invalid_argument());

    let aid = format!("group1/{appender}");
    c.append(&aid, b"more").await.unwrap();
    let body = st.last(sc::APPEND_FILE).body;
    assert_eq!(&body[..8], &44i64.to_be_bytes());
    assert_eq!(&body[8..16], &4i64.to_be_bytes());
    assert_eq!(&body[16..60], appender.to_string().as_bytes());
    assert_eq!(&body[60..], b"more");
    c.modify(&aid, 2, b"zz").await.unwrap();
    let body = st.last(sc::MODIFY_FILE).body;
    assert_eq!(&body[8..16], &2i64.to_be_bytes());
    assert_eq!(&body[68..], b"zz");
    c.truncate(&aid, 1).await.unwrap();
    let req = fdfs_proto::storage::TruncateReq::decode(&st.last(sc::TRUNCATE_FILE).body).unwrap();
    assert_eq!(req.new_size, 1);
    let new_id = c.regenerate_appender_name(&aid).await.unwrap();
    assert_eq!(new_id.logic, master);
}

#[tokio::test]
async fn delete_storage_goes_to_every_tracker() {
    let t1 = fake(|_| Reply::Ok(Vec::new())).await;
    let t2 = fake(|_| Reply::Status(2)).await;
    let c = Client::new(vec![t1.addr, t2.addr], opts()).unwrap();
    c.delete_storage("group1", "192.168.0.5").await.unwrap();
    for t in [&t1, &t2] {
        let r = t.last(tc::SERVER_DELETE_STORAGE);
        let req = fdfs_proto::tracker::DeleteStorageReq::decode(&r.body).unwrap();
        assert_eq!(req.storage_id, "192.168.0.5");
    }
    // Only refusals: the refusal is the answer.
    let t3 = fake(|_| Reply::Status(16)).await;
    let c = Client::new(vec![t3.addr, t1.addr], opts()).unwrap();
    assert!(c
        .delete_storage("group1", "s1")
        .await
        .unwrap_err()
        .is_busy());
}

#[tokio::test]
async fn file_info_request_carries_flags_in_status() {
    let (st, _) = memory_storage().await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let id = c.upload(b"hello", &UploadOptions::new()).await.unwrap();
    let info = c.query_file_info_flags(&id.to_string(), 1).await.unwrap();
    assert_eq!(info.file_size, 5);
    assert_eq!(st.last(sc::QUERY_FILE_INFO).status, 1);
}

#[tokio::test]
async fn stale_untested_connections_are_retried_or_checked() {
    // Servers that close after every answer; the client reuses pooled
    // connections without a test (idle < active_test_after).
    let closing_storage = fake(|r| match r.cmd {
        sc::UPLOAD_FILE => {
            let head = UploadHead::decode(&r.body[..UploadHead::LEN], r.body.len() as u64).unwrap();
            Reply::OkThenClose(id_reply(&name_for(head.file_size, 0, false, "")))
        }
        sc::DELETE_FILE | sc::GET_METADATA => Reply::OkThenClose(Vec::new()),
        _ => Reply::Status(22),
    })
    .await;
    let storage = closing_storage.addr;
    let t = fake(move |r| match r.cmd {
        tc::QUERY_STORE_WITHOUT_GROUP_ONE => Reply::OkThenClose(store_reply(storage, 0)),
        tc::QUERY_FETCH_ONE | tc::QUERY_UPDATE => Reply::OkThenClose(fetch_reply(storage)),
        _ => Reply::Status(22),
    })
    .await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let id = c
        .upload(bytes::Bytes::from_static(b"abc"), &UploadOptions::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Tracker query: retried on a new connection. Upload: checked first.
    let id2 = c.upload(b"def", &UploadOptions::new()).await.unwrap();
    assert_eq!(id2.logic.info.file_size(), Some(3));
    // Idempotent read (retried) and a delete (checked, sent once).
    c.get_metadata(&id.to_string()).await.unwrap();
    c.delete(&id.to_string()).await.unwrap();
    assert_eq!(
        closing_storage.cmds(),
        vec![
            sc::UPLOAD_FILE,
            sc::UPLOAD_FILE,
            sc::GET_METADATA,
            sc::DELETE_FILE
        ]
    );
    assert_eq!(closing_storage.accepts(), 4);
    assert_eq!(t.accepts(), 4);
}

#[tokio::test]
async fn ipv6_sized_replies_and_the_all_queries_decode() {
    let s1: SocketAddr = "127.0.0.5:23001".parse().unwrap();
    let s2: SocketAddr = "127.0.0.6:23002".parse().unwrap();
    let srv = |a: SocketAddr| ServerAddr {
        ip: a.ip().to_string(),
        port: a.port(),
    };
    let t = fake(move |r| {
        let mut b = Vec::new();
        match r.cmd {
            tc::QUERY_STORE_WITH_GROUP_ONE => {
                assert_eq!(&r.body[..6], b"group1");
                StoreResp {
                    group: group(),
                    server: srv(s1),
                    store_path_index: 2,
                    ip_size: IpSize::V6,
                }
                .encode(&mut b)
            }
            tc::QUERY_STORE_WITHOUT_GROUP_ALL => fdfs_proto::tracker::StoreAllResp {
                group: group(),
                servers: vec![srv(s1), srv(s2)],
                store_path_index: 1,
                ip_size: IpSize::V4,
            }
            .encode(&mut b),
            tc::QUERY_FETCH_ALL => FetchResp {
                group: group(),
                servers: vec![srv(s2), srv(s1)],
                ip_size: IpSize::V6,
            }
            .encode(&mut b),
            _ => return Reply::Status(22),
        }
        Reply::Ok(b)
    })
    .await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let one = c.query_store(Some("group1")).await.unwrap();
    assert_eq!((one.server, one.store_path_index), (s1, 2));
    let all = c.query_store_all(None).await.unwrap();
    assert_eq!((all.servers, all.store_path_index), (vec![s1, s2], 1));
    let id = format!("group1/{}", name_for(5, 1, false, "txt"));
    assert_eq!(c.query_fetch_all(&id).await.unwrap(), vec![s2, s1]);
    assert!(c
        .query_store(Some("bad-group"))
        .await
        .unwrap_err()
        .is_invalid_argument());
}

#[tokio::test]
async fn oversized_range_reply_is_a_protocol_error() {
    let st = fake(|r| match r.cmd {
        sc::DOWNLOAD_FILE => Reply::Ok(vec![7u8; 100]),
        _ => Reply::Status(22),
    })
    .await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let id = format!("group1/{}", name_for(500, 1, false, "txt"));
    let e = c.download_range(&id, 0, 10).await.unwrap_err();
    assert!(
        matches!(e, Error::Protocol { server, .. } if server == st.addr),
        "{e:?}"
    );
    assert_eq!(c.inner.pool.idle_count(st.addr), 0);
    assert_eq!(c.download(&id).await.unwrap(), vec![7u8; 100]);
}

#[tokio::test]
async fn listings_read_both_record_layouts() {
    use fdfs_proto::tracker::{GroupStatV610, StorageStat, StorageStatV610};
    let group = GroupStat {
        group_name: "group1".into(),
        total_mb: 100,
        free_mb: 50,
        reserved_mb: 10,
        storage_count: 2,
        storage_port: 23000,
        readable_server_count: 1,
        writable_server_count: 1,
        ..GroupStat::default()
    };
    let storage = StorageStat {
        status: 7,
        rw_mode: 6,
        id: "127.0.0.11".into(),
        ip_addr: "127.0.0.11".into(),
        version: "6.16.1".into(),
        storage_port: 23000,
        ..StorageStat::default()
    };
    let enc = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = Vec::new();
        f(&mut b);
        b
    };
    // The same figures in each layout: 113/487 and 105/612 bytes.
    let new_g = enc(&|b| group.encode(b));
    let old_g = enc(&|b| GroupStatV610::from_current(&group, 8888, 1).encode(b));
    let new_s = enc(&|b| (0..2).for_each(|_| storage.encode(b)));
    let old_s = enc(&|b| (0..2).for_each(|_| StorageStatV610::from_current(&storage, 0).encode(b)));
    assert_eq!(
        (new_g.len(), old_g.len(), new_s.len(), old_s.len()),
        (113, 105, 974, 1224)
    );
    for (groups, storages, reserved) in [(new_g, new_s, 10), (old_g, old_s, 0)] {
        let t = fake(move |r| match r.cmd {
            tc::SERVER_LIST_ALL_GROUPS | tc::SERVER_LIST_ONE_GROUP => Reply::Ok(groups.clone()),
            tc::SERVER_LIST_STORAGE => Reply::Ok(storages.clone()),
            _ => Reply::Status(22),
        })
        .await;
        let c = Client::new(vec![t.addr], opts()).unwrap();
        let want = GroupStat {
            reserved_mb: reserved,
            ..group.clone()
        };
        assert_eq!(c.list_groups().await.unwrap(), vec![want.clone()]);
        assert_eq!(c.list_group("group1").await.unwrap(), want);
        let l = c.list_storages("group1", None).await.unwrap();
        assert_eq!(l, vec![storage.clone(); 2], "reserved {reserved}");
    }
    // Neither layout: a protocol error naming the length.
    let t = fake(|_| Reply::Ok(vec![0; 110])).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    for e in [
        c.list_groups().await.unwrap_err(),
        c.list_storages("group1", None)
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::Protocol { .. }), "{e:?}");
        assert!(e.to_string().contains("110"), "{e}");
    }
    // Two old records where 90 wants one.
    let two = enc(&|b| (0..2).for_each(|_| GroupStatV610::from_current(&group, 0, 1).encode(b)));
    let t = fake(move |_| Reply::Ok(two.clone())).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let e = c.list_group("group1").await.unwrap_err();
    assert!(e.to_string().contains("113 or 105"), "{e}");
}

/// A storage whose download replies are `pkg_len` in the header and then
/// `bytes`, sent as they are; its tracker; a client of both; a file ID.
async fn raw_download_reply(pkg_len: u64, bytes: &'static [u8]) -> (Fake, Fake, Client, String) {
    let st = fake(move |r| match r.cmd {
        sc::DOWNLOAD_FILE => {
            let mut raw = Header::response(0, pkg_len).encode().to_vec();
            raw.extend_from_slice(bytes);
            Reply::RawThenClose(raw)
        }
        _ => Reply::Status(22),
    })
    .await;
    let t = tracker_for(st.addr).await;
    let c = Client::new(vec![t.addr], opts()).unwrap();
    let id = format!("group1/{}", name_for(3, 1, false, "txt"));
    (st, t, c, id)
}

#[tokio::test]
async fn reply_followed_by_stray_bytes_is_not_pooled() {
    // A whole reply plus bytes nobody asked for, in one write.
    let (st, t, c, id) = raw_download_reply(3, b"abcXYZ").await;
    assert_eq!(c.download(&id).await.unwrap(), b"abc");
    assert_eq!(c.inner.pool.idle_count(st.addr), 0);
    // The tracker's connection was clean and went back.
    assert_eq!(c.inner.pool.idle_count(t.addr), 1);
}

#[tokio::test]
async fn announced_length_is_not_allocated_before_the_bytes_come() {
    // A download reply announcing 1 TiB, then 5 bytes and a close: an
    // I/O error, not an attempt to allocate a terabyte.
    let (st, _t, c, id) = raw_download_reply(1 << 40, b"hello").await;
    let e = c.download(&id).await.unwrap_err();
    assert!(
        matches!(&e, Error::Io { server, source, .. }
            if *server == st.addr && source.kind() == std::io::ErrorKind::UnexpectedEof),
        "{e:?}"
    );
    assert_eq!(c.inner.pool.idle_count(st.addr), 0);
}

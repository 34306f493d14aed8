//! Hostile and malformed input against a real storage process: the golden
//! `bad_requests` cases S1–S14, path tricks, wrong groups, lying lengths,
//! stalled bodies, and a full disk (fault injection).

mod storage_support;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::{cmd, errno, Header};
use fdfs_testkit::Wire;
use storage_support::*;

/// A well-formed id that does not exist (golden S4/S8/S14).
const MISSING: &str = "M00/00/00/fwAAC2kAAAAAAAAAAAAAAAAAAAA000.txt";

fn raw(c: &mut Client, bytes: &[u8]) {
    c.s.write_all(bytes).unwrap();
}

/// DOWNLOAD, GET_METADATA and QUERY_FILE_INFO of `name` all answer ENOENT.
fn assert_not_found(c: &mut Client, name: &str) {
    assert_eq!(download(c, name, 0, 0), Err(errno::ENOENT), "{name}");
    for code in [sc::GET_METADATA, sc::QUERY_FILE_INFO] {
        assert_eq!(
            c.call(code, &name_body(name)).0,
            errno::ENOENT,
            "{name}: cmd {code}"
        );
    }
}

/// On a new connection, `code` with `body` gets EINVAL and the server
/// closes the connection.
fn assert_einval_and_closed(a: SocketAddr, what: &str, code: u8, body: &[u8]) {
    let mut c = Client::connect(a);
    assert_eq!(c.call(code, body).0, errno::EINVAL, "{what}");
    assert!(c.closed(), "{what}: connection kept");
}

#[test]
fn storage_refuses_hostile_input() {
    let (_dir, _tracker, storage) = start_cluster(&[], StorageOpts::on([127, 0, 0, 13]));
    let a = storage.addr;

    // S1: unknown command → EINVAL and close.
    let mut c = Client::connect(a);
    assert_eq!(c.call(200, &[]), (errno::EINVAL, vec![]));
    assert!(c.closed());

    // S2: malformed file id on DOWNLOAD → ENOENT, connection kept.
    let mut c = Client::connect(a);
    assert_eq!(download(&mut c, "M00/00/00/bad", 0, 0), Err(errno::ENOENT));
    assert!(c.alive());
    // Path tricks are just names that do not exist.
    for bad in [
        "M00/00/00/../../../../etc/passwd",
        "/etc/passwd",
        "M00/../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "MFF/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        "M00/FF/FF/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        "M00/00/00/wKgLU17CB62ADy-HAAA!qoZV9hQ128.zip",
    ] {
        assert_not_found(&mut c, bad);
    }
    assert!(c.alive());

    // S3: another group → EINVAL and close.
    let mut b = vec![0u8; 16];
    b.extend_from_slice(&group16("group2"));
    b.extend_from_slice(MISSING.as_bytes());
    assert_einval_and_closed(a, "S3 another group", sc::DOWNLOAD_FILE, &b);

    // S4 / S8 / S14: well-formed but missing → ENOENT, kept.
    let mut c = Client::connect(a);
    assert_not_found(&mut c, MISSING);
    assert!(c.alive());

    // S5: upload whose file_size disagrees with pkg_len → EINVAL, close.
    let mut body = upload_body(-1, b"0123456789", "txt");
    body[1..9].copy_from_slice(&100i64.to_be_bytes());
    assert_einval_and_closed(a, "S5 file_size vs pkg_len", sc::UPLOAD_FILE, &body);

    // S6: body shorter than announced, then half-close → closed.
    let mut c = Client::connect(a);
    raw(&mut c, &Header::new(sc::QUERY_FILE_INFO, 0, 60).encode());
    raw(&mut c, &name_body(MISSING)[..20]);
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed());

    // S7: negative pkg_len → closed without reply.
    let mut c = Client::connect(a);
    raw(&mut c, &[0xff; 8]);
    raw(&mut c, &[sc::QUERY_FILE_INFO, 0]);
    assert!(c.closed());

    // S9: ACTIVE_TEST with a body → EINVAL, close.
    assert_einval_and_closed(a, "S9 ACTIVE_TEST body", cmd::ACTIVE_TEST, b"x");

    // S10: SET_METADATA with op flag X → EINVAL, close.
    let mut b = Vec::new();
    b.extend_from_slice(&(MISSING.len() as i64).to_be_bytes());
    b.extend_from_slice(&7i64.to_be_bytes());
    b.push(b'X');
    b.extend_from_slice(&group16("group1"));
    b.extend_from_slice(MISSING.as_bytes());
    b.extend_from_slice(b"a\x02b\x01c\x02d");
    assert_einval_and_closed(a, "S10 op flag X", sc::SET_METADATA, &b);

    // S11: DELETE with a too-short name → EINVAL, close; and `..`.
    for bad in [
        "M00/x",
        "M00/00/00/../../../../etc/passwd_aaaaaaaaaaaaaaaaaaaa",
    ] {
        assert_einval_and_closed(a, bad, sc::DELETE_FILE, &name_body(bad));
    }

    // S12: QUIT → closed, no reply.
    let mut c = Client::connect(a);
    c.send(cmd::QUIT, 0, &[]);
    assert!(c.closed());

    // S13: huge pkg_len on a non-streamed command → closed at once.
    let mut c = Client::connect(a);
    raw(&mut c, &Header::new(sc::GET_METADATA, 0, 1 << 30).encode());
    let t = Instant::now();
    assert!(c.closed());
    assert!(t.elapsed() < Duration::from_secs(1));

    // Slave prefix with a slash; bad base64 in the master name → EINVAL.
    let good = {
        let mut c = Client::connect(a);
        upload(&mut c, sc::UPLOAD_FILE, b"master", "jpg").unwrap()
    };
    let mut b = Vec::new();
    b.extend_from_slice(&(good.len() as i64).to_be_bytes());
    b.extend_from_slice(&1i64.to_be_bytes());
    let mut prefix = b"_a/b".to_vec();
    prefix.resize(16, 0);
    b.extend_from_slice(&prefix);
    b.extend_from_slice(&[b'j', b'p', b'g', 0, 0, 0]);
    b.extend_from_slice(good.as_bytes());
    b.push(b'x');
    assert_einval_and_closed(a, "slave prefix a/b", sc::UPLOAD_SLAVE_FILE, &b);

    // Upload to a store path this server does not have → EINVAL.
    let body = upload_body(7, b"abc", "txt");
    assert_einval_and_closed(a, "store path 7", sc::UPLOAD_FILE, &body);
    // An extension with a slash → EINVAL.
    let body = upload_body(-1, b"abc", "a/b");
    assert_einval_and_closed(a, "extension a/b", sc::UPLOAD_FILE, &body);

    // Append whose file_size is larger than the body → EINVAL, close.
    let mut b = Vec::new();
    b.extend_from_slice(&(good.len() as i64).to_be_bytes());
    b.extend_from_slice(&1000i64.to_be_bytes());
    b.extend_from_slice(good.as_bytes());
    b.extend_from_slice(b"abc");
    assert_einval_and_closed(a, "append file_size 1000", sc::APPEND_FILE, &b);

    // Short body then stall: closed after network_timeout (2 s), and no
    // partial file anywhere.
    let mut c = Client::connect(a);
    let body = upload_body(-1, &[7u8; 100_000], "bin");
    raw(
        &mut c,
        &Header::new(sc::UPLOAD_FILE, 0, body.len() as u64).encode(),
    );
    raw(&mut c, &body[..50_000]);
    let t = Instant::now();
    assert!(c.closed());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Disconnect mid-upload: nothing left either.
    let mut c = Client::connect(a);
    raw(
        &mut c,
        &Header::new(sc::UPLOAD_FILE, 0, body.len() as u64).encode(),
    );
    raw(&mut c, &body[..30_000]);
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let stored = stored_files(&storage.base);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(no_temp_files(&storage));

    // The server survived all of it.
    let mut c = Client::connect(a);
    assert!(c.alive());
    assert_eq!(download(&mut c, &good, 0, 0).unwrap(), b"master");
    let log = storage_log(&storage);
    assert!(log.contains("refused"), "refusals are logged");
}

#[test]
fn storage_disk_full_gives_enospc_and_leaves_nothing() {
    let (_dir, _tracker, storage) = start_cluster(
        &[],
        StorageOpts {
            // The journal's two files (1MB each in tests) are written out
            // first at start: 1,000,000 bytes are left for uploads.
            env: vec![("FDFS_FAULT_DISK_FULL_AFTER", "3097152")],
            ..StorageOpts::on([127, 0, 0, 14])
        },
    );
    let mut c = Client::connect(storage.addr);
    let small = upload(&mut c, sc::UPLOAD_FILE, &[1u8; 600_000], "bin").unwrap();
    // The next one crosses the (injected) end of the disk mid-write.
    assert_eq!(
        upload(&mut c, sc::UPLOAD_FILE, &[2u8; 600_000], "bin"),
        Err(errno::ENOSPC)
    );
    // ENOSPC keeps the connection; nothing partial remains.
    assert!(c.alive());
    assert_eq!(stored_files(&storage.base).len(), 1);
    assert!(no_temp_files(&storage));
    assert_eq!(binlog(&storage).lines().count(), 1);
    assert_eq!(download(&mut c, &small, 0, 0).unwrap(), vec![1u8; 600_000]);
}

#[test]
fn storage_reserved_space_refuses_uploads() {
    // The tracker delivers reserved_storage_space with PARAMETER_REQ: ask
    // for more than any disk has free.
    let (_dir, _tracker, storage) = start_cluster(
        &["reserved_storage_space=99.99%"],
        StorageOpts::on([127, 0, 0, 15]),
    );
    let mut c = Client::connect(storage.addr);
    wait_until(
        "parameters from the tracker",
        Duration::from_secs(10),
        || {
            let mut c = Client::connect(storage.addr);
            matches!(
                upload(&mut c, sc::UPLOAD_FILE, b"abc", "txt"),
                Err(errno::ENOSPC)
            )
        },
    );
    assert_eq!(
        upload(&mut c, sc::UPLOAD_FILE, b"abc", "txt"),
        Err(errno::ENOSPC)
    );
    assert!(c.alive());
    assert!(no_temp_files(&storage));
}

#[test]
fn storage_honours_allow_hosts_and_max_connections() {
    let (_dir, _tracker, storage) = start_cluster(
        &[],
        StorageOpts {
            extra: vec!["allow_hosts = 127.0.0.77", "max_connections = 2"],
            ..StorageOpts::on([127, 0, 0, 21])
        },
    );
    // From 127.0.0.1 (not allowed): closed without a reply.
    let mut c = Client::connect(storage.addr);
    c.send(cmd::ACTIVE_TEST, 0, &[]);
    assert!(c.closed());
    // From 127.0.0.77: served, up to max_connections at once.
    let from77 = || {
        let s = Wire::connect_from(Ipv4Addr::new(127, 0, 0, 77), storage.addr)
            .unwrap()
            .stream;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s }
    };
    let mut a = from77();
    let mut b = from77();
    assert!(a.alive() && b.alive());
    let mut third = from77();
    third.send(cmd::ACTIVE_TEST, 0, &[]);
    assert!(third.closed());
    drop(a);
    wait_until("a slot frees up", Duration::from_secs(5), || {
        from77().alive()
    });
    assert!(b.alive());
}

/// A client that asks for a big file and never reads it: the storage's
/// send (sendfile) stalls on the full socket, gives up after
/// network_timeout (2 s) and closes; other clients are served meanwhile.
#[test]
fn storage_drops_a_download_whose_reader_stalls() {
    let (_dir, _tracker, storage) = start_cluster(&[], StorageOpts::on([127, 0, 0, 14]));
    let a = storage.addr;
    let mut c = Client::connect(a);
    // Far more than loopback socket buffers hold.
    let big = vec![0x5au8; 48 << 20];
    let name = upload(&mut c, sc::UPLOAD_FILE, &big, "bin").unwrap();
    let small = upload(&mut c, sc::UPLOAD_FILE, b"still here", "txt").unwrap();

    let mut stalled = Client::connect(a);
    let mut body = Vec::new();
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&name_body(&name));
    stalled.send(sc::DOWNLOAD_FILE, 0, &body);
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile the server answers others.
    assert_eq!(download(&mut c, &small, 0, 0).unwrap(), b"still here");
    // After the timeout the stalled reply is cut: reading what was sent
    // ends with EOF well before the whole file.
    std::thread::sleep(Duration::from_secs(4));
    stalled
        .s
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut stalled.s, &mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("the stalled download was not closed: {e} after {got} bytes"),
        }
    }
    assert!(got < 10 + big.len(), "the whole file arrived: {got} bytes");
    // (`c` idled past the timeout too: a new connection.)
    let mut c = Client::connect(a);
    assert_eq!(download(&mut c, &small, 0, 0).unwrap(), b"still here");
}

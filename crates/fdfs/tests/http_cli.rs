//! `fdfs gateway` and `fdfs token` as processes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fdfs_proto::{cmd, Header, HEADER_LEN};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tracker that knows no group: answers ACTIVE_TEST and an empty
/// list-groups reply.
fn fake_tracker() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || loop {
                let mut h = [0u8; HEADER_LEN];
                if s.read_exact(&mut h).is_err() {
                    return;
                }
                let h = Header::decode(&h, 1024).unwrap();
                let mut b = vec![0u8; h.pkg_len as usize];
                s.read_exact(&mut b).unwrap();
                if h.cmd == cmd::QUIT {
                    return;
                }
                assert!(
                    h.cmd == cmd::ACTIVE_TEST || h.cmd == cmd::tracker::SERVER_LIST_ALL_GROUPS,
                    "unexpected command {}",
                    h.cmd
                );
                let _ = s.write_all(&Header::response(0, 0).encode());
            });
        }
    });
    addr
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Starts `fdfs gateway` on 127.0.0.1 with a fake tracker, its conf in
/// `dir` with `extra` lines; waits until /healthz answers. The process (killed
/// on drop), its address and that first answer.
fn start_gateway(dir: &std::path::Path, extra: &str) -> (Kill, String, String) {
    let tracker = fake_tracker();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.join("gateway.conf");
    std::fs::write(
        &conf,
        format!(
            "bind_addr = 127.0.0.1\nport = {port}\ntracker_server = {tracker}\n\
             connect_timeout = 1s\n{extra}"
        ),
    )
    .unwrap();
    let child = Kill(
        Command::new(BIN)
            .arg("gateway")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    loop {
        if let Some(r) = http_get(&addr, "/healthz") {
            return (child, addr, r);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gateway_process_serves_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("cache_path = {}\n", dir.path().join("cache").display());
    let (_child, addr, resp) = start_gateway(dir.path(), &cache);
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    assert!(resp.ends_with("ok\n"));
    let resp = http_get(
        &addr,
        "/group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
    )
    .unwrap();
    assert!(resp.contains(" 404 "), "unknown group: {resp}");
    assert!(dir.path().join("cache").is_dir());
}

#[test]
fn gateway_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gateway.conf");
    std::fs::write(&conf, "port = 8000\n").unwrap();
    let out = Command::new(BIN)
        .arg("gateway")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tracker_server"));
}

#[test]
fn token_prints_a_signed_url() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("http.conf");
    std::fs::write(
        &conf,
        "http.anti_steal.check_token = true\nhttp.anti_steal.secret_key = FastDFS1234567890\n",
    )
    .unwrap();
    let id = "group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip";
    let out = Command::new(BIN)
        .args([
            "token",
            id,
            "--ts",
            "1700000000",
            "--base-url",
            "http://10.0.0.1:8888/",
        ])
        .arg("--conf")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want_token = fdfs_http::make_token(
        "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        "FastDFS1234567890",
        1_700_000_000,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("http://10.0.0.1:8888/{id}?token={want_token}&ts=1700000000")
    );
    let out = Command::new(BIN)
        .args(["token", "not-an-id", "--conf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The gateway's access log: a line per request; after logrotate moves
/// the file, SIGHUP makes the gateway write to a new one at the path.
#[test]
fn gateway_access_log_reopens_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (child, addr, _) = start_gateway(dir.path(), &format!("access_log = {}\n", log.display()));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"GET /healthz HTTP/1.0\" 200 "), "{text}");
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
    let t0 = Instant::now();
    loop {
        http_get(&addr, "/healthz?after=hup");
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/healthz?after=hup")) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no new access log after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
    assert!(moved.contains("\"GET /healthz HTTP/1.0\""), "{moved}");
}

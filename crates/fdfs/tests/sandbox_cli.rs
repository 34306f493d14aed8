//! `fdfs sandbox` end to end: start it in a temporary folder on its own
//! loopback addresses and ports, upload and download through the client
//! library, stop it with SIGTERM (every server must exit and the file stay
//! on disk), start it again and read the same file back.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fdfs_client::{Client, ClientOptions, UploadOptions};
use fdfs_proto::FileId;
use fdfs_testkit::{free_port, TestDir};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

/// A loopback /24 unlikely to be used by tests running beside this one
/// (testkit's random addresses live in 127.0.100-199.x).
fn random_net() -> (u8, u8) {
    let n = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    (210 + (n % 40) as u8, (n >> 8) as u8)
}

struct Sandbox {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
}

impl Sandbox {
    fn start(dir: &Path, net: &str, tracker_port: u16, storage_port: u16) -> Sandbox {
        Self::start_with(
            dir,
            net,
            tracker_port,
            storage_port,
            &["--settle-secs", "5"],
        )
    }

    fn start_with(
        dir: &Path,
        net: &str,
        tracker_port: u16,
        storage_port: u16,
        extra: &[&str],
    ) -> Sandbox {
        let mut cmd = Command::new(BIN);
        cmd.args(["sandbox", "--dir"])
            .arg(dir)
            .args(["--net", net])
            .args(["--tracker-port", &tracker_port.to_string()])
            .args(["--storage-port", &storage_port.to_string()])
            .args(["--subdirs", "4"]);
        if !extra.contains(&"--http-port") {
            // No storage HTTP, hence no gateway, unless a test asks.
            cmd.args(["--http-port", "0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fdfs sandbox");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the reader threads hold senders: the channel closes when the
        // sandbox's output does (it exited).
        drop(tx);
        let mut sb = Sandbox {
            child,
            lines: rx,
            output: Vec::new(),
        };
        sb.wait_line("Ctrl-C stops everything", Duration::from_secs(90));
        sb
    }

    /// Reads output until a line contains `needle`.
    fn wait_line(&mut self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.output.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} from the sandbox; output:\n{}",
                    self.output.join("\n")
                ),
            }
        }
    }

    /// The server processes the sandbox started (its direct children).
    fn server_pids(&self) -> Vec<i32> {
        let me = self.child.id() as i32;
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state, ppid, ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(me) {
                v.push(pid);
            }
        }
        v
    }

    /// SIGTERM; the sandbox must exit with 0 within 30 s.
    fn terminate(mut self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < end, "the sandbox did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.output.push(l);
        }
        assert!(
            status.success(),
            "sandbox exited with {status}; output:\n{}",
            self.output.join("\n")
        );
        std::mem::take(&mut self.output)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry but is no longer running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn client(tracker: std::net::SocketAddr) -> Client {
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        network_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    Client::new(vec![tracker], opts).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Where the storages of group1 keep `id` (whichever has it).
fn on_disk(dir: &Path, id: &FileId) -> Vec<PathBuf> {
    ["group1-1", "group1-2"]
        .iter()
        .map(|s| dir.join(s).join("data").join(id.logic.relative_path()))
        .filter(|p| p.is_file())
        .collect()
}

#[test]
fn sandbox_serves_stops_on_sigterm_and_keeps_data_across_restarts() {
    let tmp = TestDir::new("sandbox");
    let dir = tmp.join("sb");
    let (a, b) = random_net();
    let net = format!("127.{a}.{b}");
    let tracker_ip = Ipv4Addr::new(127, a, b, 1);
    let tracker_port = free_port(tracker_ip);
    let storage_port = free_port(Ipv4Addr::new(127, a, b, 11));
    let tracker = std::net::SocketAddr::from((tracker_ip, tracker_port));

    let sb = Sandbox::start(&dir, &net, tracker_port, storage_port);
    let banner = sb.output.join("\n");
    for f in [
        "tracker/tracker.conf",
        "group1-1/storage.conf",
        "group1-2/storage.conf",
        "client/client.conf",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing; banner:\n{banner}");
    }
    assert!(
        banner.contains(&format!("{net}.11:{storage_port}"))
            && banner.contains(&format!("{net}.12:{storage_port}"))
            && banner.contains(&tracker.to_string()),
        "addresses missing from the banner:\n{banner}"
    );
    assert!(
        banner.contains("upload-file") && banner.contains("client.conf"),
        "no upload command in the banner:\n{banner}"
    );
    // Every server's metrics port is in the banner and answers.
    for ip in [tracker_ip, Ipv4Addr::new(127, a, b, 11)] {
        let m = std::net::SocketAddr::from((ip, 9122));
        assert!(
            banner.contains(&format!("http://{m}/metrics")),
            "no metrics URL for {ip} in the banner:\n{banner}"
        );
        let (code, page) = http_get(m, "/metrics");
        assert_eq!(code, 200);
        assert!(String::from_utf8_lossy(&page).contains("fdfs_process_resident_memory_bytes"));
    }
    let conf = std::fs::read_to_string(dir.join("client/client.conf")).unwrap();
    assert!(
        conf.contains(&format!("tracker_server = {tracker}")),
        "{conf}"
    );
    // Three servers share the cores: each gets its share of workers.
    let share = (std::thread::available_parallelism().unwrap().get() / 3).max(1);
    for f in ["tracker/tracker.conf", "group1-1/storage.conf"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            text.contains(&format!("\nwork_threads = {share}\n")),
            "{f}: {text}"
        );
    }

    let pids = sb.server_pids();
    assert_eq!(pids.len(), 3, "expected tracker + 2 storages: {pids:?}");

    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let rt = rt();
    let id = rt.block_on(async {
        let c = client(tracker);
        let id = c
            .upload(&body, &UploadOptions::new().ext("bin"))
            .await
            .expect("upload to the sandbox");
        let back = c.download(&id.to_string()).await.expect("download");
        assert!(back == body, "downloaded bytes differ");
        id
    });
    assert_eq!(id.group.as_str(), "group1");

    let out = sb.terminate();
    assert!(
        out.iter().any(|l| l.contains("data is kept")),
        "{}",
        out.join("\n")
    );
    for p in &pids {
        assert!(
            !alive(*p),
            "server pid {p} still runs after the sandbox stopped"
        );
    }
    let copies = on_disk(&dir, &id);
    assert!(!copies.is_empty(), "{id} is not on disk after the stop");
    for c in &copies {
        assert!(std::fs::read(c).unwrap() == body, "{} differs", c.display());
    }

    // Second start: same folder, same flags; the configs are reused and a
    // user's edit survives.
    let sconf = dir.join("group1-1/storage.conf");
    let mut text = std::fs::read_to_string(&sconf).unwrap();
    text.push_str("# edited by the user\n");
    std::fs::write(&sconf, &text).unwrap();
    let sb = Sandbox::start(&dir, &net, tracker_port, storage_port);
    assert!(
        sb.output.iter().any(|l| l.contains("restarted")),
        "{}",
        sb.output.join("\n")
    );
    rt.block_on(async {
        let c = client(tracker);
        let back = c
            .download(&id.to_string())
            .await
            .expect("download after the restart");
        assert!(back == body, "downloaded bytes differ after the restart");
    });
    assert_eq!(std::fs::read_to_string(&sconf).unwrap(), text);
    let pids = sb.server_pids();
    sb.terminate();
    for p in &pids {
        assert!(
            !alive(*p),
            "server pid {p} still runs after the second stop"
        );
    }
}

/// A plain HTTP/1.0 GET: the status code and the body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect for HTTP");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: sandbox\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the HTTP reply");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (code, raw[split + 4..].to_vec())
}

#[test]
fn sandbox_starts_a_gateway_that_serves_uploaded_files() {
    let tmp = TestDir::new("sandbox-http");
    let dir = tmp.join("sb");
    let (a, b) = random_net();
    // A /24 of its own: the other tests of this file add 0, 64 and 128.
    let (a, b) = (a, b.wrapping_add(192));
    let net = format!("127.{a}.{b}");
    let tracker_ip = Ipv4Addr::new(127, a, b, 1);
    let tracker_port = free_port(tracker_ip);
    let gateway_port = free_port(tracker_ip);
    let storage_ip = Ipv4Addr::new(127, a, b, 11);
    let storage_port = free_port(storage_ip);
    let http_port = free_port(storage_ip);
    let sb = Sandbox::start_with(
        &dir,
        &net,
        tracker_port,
        storage_port,
        &[
            "--servers",
            "1",
            "--settle-secs",
            "5",
            "--http-port",
            &http_port.to_string(),
            "--gateway-port",
            &gateway_port.to_string(),
        ],
    );
    let gateway = std::net::SocketAddr::from((tracker_ip, gateway_port));
    let banner = sb.output.join("\n");
    assert!(
        banner.contains(&format!("gateway: http://{gateway}/")),
        "no gateway in the banner:\n{banner}"
    );
    assert!(dir.join("gateway/gateway.conf").is_file());
    let pids = sb.server_pids();
    assert_eq!(
        pids.len(),
        3,
        "expected tracker, storage, gateway: {pids:?}"
    );

    let body: Vec<u8> = (0..50_000u32).map(|i| (i * 13 + i / 7) as u8).collect();
    let tracker = std::net::SocketAddr::from((tracker_ip, tracker_port));
    let id = rt().block_on(async {
        client(tracker)
            .upload(&body, &UploadOptions::new().ext("bin"))
            .await
            .expect("upload to the sandbox")
    });
    let path = format!("/{id}");
    let (code, got) = http_get(std::net::SocketAddr::from((storage_ip, http_port)), &path);
    assert_eq!(code, 200, "storage HTTP");
    assert!(got == body, "storage HTTP bytes differ");
    // The gateway learns the group's servers from the tracker: retry while
    // its first refresh is under way.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, got) = http_get(gateway, &path);
        if code == 200 {
            assert!(got == body, "gateway bytes differ");
            break;
        }
        assert!(Instant::now() < end, "gateway still answers {code}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(gateway, "/healthz").0, 200);
    // A second request comes from the cache; /metrics counts both (the
    // sandbox lets 127.0.0.0/8 purge, hence read metrics).
    assert_eq!(http_get(gateway, &path).0, 200);
    let (code, page) = http_get(gateway, "/metrics");
    assert_eq!(code, 200);
    let page = String::from_utf8(page).unwrap();
    let count = |prefix: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{page}"))
    };
    assert!(count("fdfs_gateway_responses{source=\"storage\"}") >= 1.0);
    assert!(count("fdfs_gateway_responses{source=\"cache\"}") >= 1.0);
    assert_eq!(count("fdfs_gateway_group_servers{group=\"group1\"}"), 1.0);
    assert!(count("fdfs_gateway_cache_entries") >= 1.0);
    sb.terminate();
    for p in &pids {
        assert!(!alive(*p), "server pid {p} still runs after the stop");
    }
}

#[test]
fn servers_stop_when_the_sandbox_is_killed() {
    let tmp = TestDir::new("sandbox-kill");
    let dir = tmp.join("sb");
    let (a, b) = random_net();
    let (a, b) = (a, b.wrapping_add(64));
    let net = format!("127.{a}.{b}");
    let tracker_port = free_port(Ipv4Addr::new(127, a, b, 1));
    let storage_port = free_port(Ipv4Addr::new(127, a, b, 11));
    let mut sb = Sandbox::start_with(
        &dir,
        &net,
        tracker_port,
        storage_port,
        &["--servers", "1", "--settle-secs", "5"],
    );
    let pids = sb.server_pids();
    assert_eq!(pids.len(), 2, "expected tracker + 1 storage: {pids:?}");
    // SIGKILL: no clean-up code runs in the sandbox; the servers must still
    // go (the kernel sends them SIGTERM when their parent dies).
    sb.child.kill().unwrap();
    sb.child.wait().unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &pids {
        assert!(!alive(*p), "server pid {p} outlived the killed sandbox");
    }
}

#[test]
fn bench_against_a_two_group_sandbox_reports_every_phase_as_json() {
    let tmp = TestDir::new("sandbox-bench");
    let dir = tmp.join("sb");
    let (a, b) = random_net();
    // A different /24 from the other test of this file.
    let (a, b) = (a, b.wrapping_add(128));
    let net = format!("127.{a}.{b}");
    let tracker_ip = Ipv4Addr::new(127, a, b, 1);
    let tracker_port = free_port(tracker_ip);
    let storage_port = free_port(Ipv4Addr::new(127, a, b, 11));
    // Bench's lag samples need every server of group1 ACTIVE: wait for it.
    let sb = Sandbox::start_with(
        &dir,
        &net,
        tracker_port,
        storage_port,
        &["--groups", "2", "--servers", "2,1", "--settle-secs", "60"],
    );
    let banner = sb.output.join("\n");
    assert!(
        banner.contains(&format!("{net}.21:{storage_port}")) && !banner.contains("group2-2"),
        "expected group1 with 2 servers and group2 with 1:\n{banner}"
    );
    let out = Command::new(BIN)
        .args([
            "bench",
            "--tracker",
            &format!("{tracker_ip}:{tracker_port}"),
        ])
        .args(["--files", "40", "--size", "3K", "--concurrency", "4"])
        .args(["--lag-samples", "4", "--lag-timeout-secs", "20", "--json"])
        .args(["--ops", "upload,download,delete,ping"])
        .output()
        .expect("run fdfs bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["files"], 40);
    assert_eq!(v["size"], 3072);
    let phases = v["phases"].as_array().expect("phases");
    let ops: Vec<&str> = phases.iter().map(|p| p["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["upload", "download", "delete", "ping"]);
    for p in phases {
        assert_eq!(p["ok"], 40, "{p}");
        assert_eq!(p["errors"], 0, "{p}");
        assert!(p["ops_per_sec"].as_f64().unwrap() > 0.0, "{p}");
        let lat = &p["latency_ms"];
        let (p50, p99) = (lat["p50"].as_f64().unwrap(), lat["p99"].as_f64().unwrap());
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= lat["max"].as_f64().unwrap(),
            "{p}"
        );
    }
    let up = &phases[0];
    let mb = up["mb_per_sec"].as_f64().unwrap();
    let expect = up["ops_per_sec"].as_f64().unwrap() * 3072.0 / 1e6;
    assert!((mb - expect).abs() < 1e-6 * expect.max(1.0), "{up}");
    let lag = &v["replication_lag"];
    assert_eq!(lag["samples"], 4, "{lag}");
    assert_eq!(lag["failed"], 0, "{lag}");
    // Uploads to group1 each have one copy to check on the other server;
    // the tracker spreads uploads over both groups.
    let all = &v["all_replicated"];
    let copies = all["copies"].as_u64().expect("copies");
    assert!(0 < copies && copies < 40, "{all}");
    assert!(all["error"].is_null(), "{all}");
    assert!(all["ms_after_upload"].as_f64().unwrap() >= 0.0, "{all}");

    // The delete phase removed every file, on the peers too once the
    // deletions are replicated: no regular file below data/<HH>/<HH>/.
    let files_left = |s: &str| -> Vec<PathBuf> {
        let data = dir.join(s).join("data");
        std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .flat_map(|hh| std::fs::read_dir(hh.path()).unwrap().flatten())
            .filter(|e| e.path().is_dir())
            .flat_map(|ll| std::fs::read_dir(ll.path()).unwrap().flatten())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect()
    };
    let servers = ["group1-1", "group1-2", "group2-1"];
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && servers.iter().any(|s| !files_left(s).is_empty()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in servers {
        let left = files_left(s);
        assert!(
            left.is_empty(),
            "{s} still has files after delete: {left:?}"
        );
    }
    sb.terminate();
}

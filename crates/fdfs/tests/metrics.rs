//! The metrics port (`metrics_port`) of a real tracker and storage:
//! `/metrics` in the Prometheus text format and `/status` as JSON, with
//! figures that follow what the cluster did.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::storage::UploadHead;
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{free_port, random_loopback, TestDir, TrackerProc, Wire};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

/// One HTTP/1.0 exchange: (status code, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

/// `line` without its terminal colour codes (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The name of a file uploaded `age` seconds ago to 127.0.99.99, a server
/// of no group here.
fn stranger_file_name(age: u32) -> String {
    use fdfs_proto::file_id::{ext_part, LogicName, NameInfo, SourceServer};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let info = NameInfo {
        source: SourceServer::Ip(Ipv4Addr::new(127, 0, 99, 99)),
        timestamp: now - age,
        size_field: NameInfo::size_field_for(10, false, 7),
        crc32: 0x1234_5678,
    };
    LogicName::build(0, 0, 0, info, None, &ext_part("jpg", 1).unwrap()).to_string()
}

/// The value of the sample line that starts with `prefix` (name and labels).
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tracker_and_storage_show_their_state() {
    let dir = TestDir::new("metrics");
    let tip = Ipv4Addr::LOCALHOST;
    let tmetrics = SocketAddr::from((tip, free_port(tip)));
    let tracker = TrackerProc::start(
        BIN,
        dir.path(),
        tip,
        &[
            &format!("metrics_port = {}", tmetrics.port()),
            "storage_sync_file_max_delay = 60",
        ],
    );
    let sip = random_loopback();
    let smetrics = SocketAddr::from((sip, free_port(sip)));
    let shttp = SocketAddr::from((sip, free_port(sip)));
    let storage = StorageProc::start(
        BIN,
        dir.path(),
        sip,
        "group1",
        &[tracker.addr],
        &[
            &format!("metrics_port = {}", smetrics.port()),
            &format!("http.server_port = {}", shttp.port()),
            "use_access_log = true",
        ],
    );
    let ip = sip.to_string();
    let active = format!(
        "fdfs_tracker_storage_status{{group=\"group1\",id=\"{ip}\",ip=\"{ip}\",status=\"ACTIVE\"}}"
    );
    wait_for("the tracker to show the storage ACTIVE", 30, || {
        sample(&http(tmetrics, "GET", "/metrics").1, &active) == Some(7.0)
    });

    // One upload shows in the storage's counters.
    let data = vec![7u8; 3000];
    let mut body = Vec::new();
    UploadHead {
        store_path_index: -1,
        file_size: data.len() as u64,
        ext: "bin".into(),
    }
    .encode(&mut body);
    body.extend_from_slice(&data);
    let (st, reply) = Wire::connect(storage.addr)
        .unwrap()
        .call(sc::UPLOAD_FILE, &body)
        .unwrap();
    assert_eq!(st, 0);
    // Its built-in HTTP counts what it answers: the file twice (whole,
    // then a range), and a name it does not have.
    let group = String::from_utf8_lossy(&reply[..16])
        .trim_end_matches('\0')
        .to_owned();
    let url = format!("/{group}/{}", String::from_utf8_lossy(&reply[16..]));
    let (code, got) = http(shttp, "GET", &url);
    assert_eq!((code, got.len()), (200, 3000));
    assert_eq!(http(shttp, "GET", "/group1/M00/00/00/nothing.jpg").0, 400);
    let (code, page) = http(smetrics, "GET", "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&page, "fdfs_storage_http_responses{code=\"200\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "fdfs_storage_http_responses{code=\"400\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "fdfs_storage_http_responses{code=\"404\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&page, "fdfs_storage_http_content_bytes"),
        Some(3000.0)
    );
    assert!(page.contains("# TYPE fdfs_storage_http_responses counter\n"));
    // use_access_log: the HTTP requests are in logs/http_access.log, in
    // nginx's combined format.
    let log = std::fs::read_to_string(storage.base.join("logs/http_access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].starts_with("127.0.0.1 - - [")
            && lines[0].contains(&format!("\"GET {url} HTTP/1.0\" 200 3000 \"-\" \"-\" ")),
        "{log}"
    );
    assert!(lines[1].contains("\" 400 "), "{log}");
    // An outside logrotate moves the log away; SIGHUP, and the next line
    // goes to a new file at the path.
    let access = storage.base.join("logs/http_access.log");
    std::fs::rename(&access, access.with_extension("log.1")).unwrap();
    let pid = storage.proc.pid().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for("a new http_access.log after SIGHUP", 10, || {
        http(shttp, "GET", &url);
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains(" 200 3000 "))
    });

    // A recent file said to come from a server that is not in the group
    // (the storage knows its group from the tracker): not found here, and
    // the storage does not proxy to the address the name gives.
    // (It learns its group with a heartbeat reply: give it a few.)
    let stranger = stranger_file_name(0);
    wait_for("a 404 for a stranger's file", 10, || {
        http(shttp, "GET", &format!("/group1/{stranger}")).0 == 404
    });
    assert!(
        storage
            .proc
            .log_text()
            .contains("source is not a member of the group"),
        "{}",
        storage.proc.log_text()
    );
    // Two minutes old with the tracker's storage_sync_file_max_delay of 60
    // s (not mod_fastdfs's default of a day): it should have been here.
    let (code, _) = http(
        shttp,
        "GET",
        &format!("/group1/{}", stranger_file_name(120)),
    );
    assert_eq!(code, 404);
    assert!(
        storage
            .proc
            .log_text()
            .lines()
            .map(without_colours)
            .any(|l| l.contains("file not found") && l.contains("old=true")),
        "{}",
        storage.proc.log_text()
    );
    let (code, page) = http(smetrics, "GET", "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&page, "fdfs_storage_success_upload_count"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "fdfs_storage_success_upload_bytes"),
        Some(3000.0)
    );
    assert_eq!(
        sample(&page, "fdfs_storage_status{status=\"ACTIVE\"}"),
        Some(7.0),
        "{page}"
    );
    assert!(sample(&page, "fdfs_storage_path_free_bytes{path=\"0\"}").is_some_and(|v| v > 0.0));
    assert!(sample(&page, "fdfs_storage_binlog_offset_bytes").is_some_and(|v| v > 0.0));
    assert!(sample(&page, "fdfs_process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(page.contains("# TYPE fdfs_storage_success_upload_count counter\n"));

    let (code, status) = http(smetrics, "GET", "/status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["role"], "storage");
    assert_eq!(v["group"], "group1");
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["id"], ip.as_str());

    let (_, status) = http(tmetrics, "GET", "/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["role"], "tracker");
    assert_eq!(v["groups"][0]["name"], "group1");
    assert_eq!(v["groups"][0]["storages"][0]["id"], ip.as_str());
    assert_eq!(v["groups"][0]["storages"][0]["status"], "ACTIVE");
    let page = http(tmetrics, "GET", "/metrics").1;
    assert_eq!(sample(&page, "fdfs_tracker_groups"), Some(1.0));
    assert_eq!(
        sample(
            &page,
            "fdfs_tracker_group_active_storages{group=\"group1\"}"
        ),
        Some(1.0)
    );

    // Anything else is refused, and the port keeps serving.
    assert_eq!(http(smetrics, "GET", "/nothing").0, 404);
    assert_eq!(http(tmetrics, "POST", "/metrics").0, 405);
    let (code, body) = http(tmetrics, "HEAD", "/metrics");
    assert_eq!((code, body.as_str()), (200, ""));
    assert_eq!(http(smetrics, "GET", "/metrics").0, 200);
}

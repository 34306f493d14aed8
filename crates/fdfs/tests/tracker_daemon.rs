//! The tracker as a daemon: foreground and background start, pid file,
//! second-instance refusal, stop, restart, `disabled`, the busybox name.

mod tracker_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fdfs_testkit::{free_port, wait_for_port, wait_until, write_file, TestDir, TrackerProc};
use tracker_common::*;

/// Running (a zombie nobody reaped yet counts as gone).
fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The pid in a pid file.
fn read_pid(pid_file: &Path) -> i32 {
    std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `fdfs tracker <conf> <args...>`, run to completion.
fn fdfs_tracker(conf: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("tracker")
        .arg(conf)
        .args(args)
        .output()
        .unwrap()
}

/// Writes `<base>/<name>` with the tracker.conf testkit would write for
/// `ip:port`; its path.
fn write_conf(base: &Path, name: &str, ip: Ipv4Addr, port: u16, extra: &[&str]) -> PathBuf {
    std::fs::create_dir_all(base).unwrap();
    let conf = base.join(name);
    write_file(&conf, &TrackerProc::conf_text(ip, port, base, extra));
    conf
}

/// Kills a background daemon left behind by a failed assertion.
struct Reaper(std::path::PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(t) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = t.trim().parse::<i32>() {
                // SAFETY: best-effort cleanup of our own daemon.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

#[test]
fn foreground_pid_file_second_instance_and_stop() {
    let dir = TestDir::new("tr-daemon");
    let mut tr = tracker(&dir, &[]);
    let pid = tr.proc.pid().unwrap();
    let pid_file = tr.pid_file();
    assert!(wait_until(Duration::from_secs(3), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.trim() == pid.to_string())
    }));
    // A second instance on the same base_path refuses, naming the pid.
    let out = fdfs_tracker(&tr.conf, &["start", "--foreground"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(&pid.to_string()),
        "{err}"
    );
    // Still serving.
    assert_eq!(list_groups(tr.addr).len(), 0);
    // `stop` signals it and waits until it is gone; the pid file goes too.
    let out = fdfs_tracker(&tr.conf, &["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tr.proc.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(!pid_file.exists());
    assert!(std::net::TcpStream::connect(tr.addr).is_err());
    // Stopping again: not running, non-zero.
    let out = fdfs_tracker(&tr.conf, &["stop"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    // The log file has the life-cycle.
    let log = std::fs::read_to_string(tr.log_file()).unwrap();
    assert!(log.contains("started") && log.contains("SIGTERM"), "{log}");
}

/// The log file rotates on size, and SIGHUP reopens it after an outside
/// logrotate moved it.
#[test]
fn the_log_rotates_on_size_and_reopens_on_sighup() {
    let dir = TestDir::new("tr-logs");
    let tr = tracker(
        &dir,
        &["log_file_rotate_on_size = 300", "log_level = debug"],
    );
    let logs = tr.log_file().parent().unwrap().to_owned();
    let rotated = || -> Vec<PathBuf> {
        std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("trackerd.log."))
            .collect()
    };
    // Requests log lines: soon more than 300 bytes.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let _ = list_groups(tr.addr);
            !rotated().is_empty()
        }),
        "no rotated log in {}",
        logs.display()
    );
    for p in rotated() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        // trackerd.log.YYYYMMDD_HHMMSS[.N]
        let stamp = &name["trackerd.log.".len()..];
        assert!(stamp.len() >= 15 && stamp.as_bytes()[8] == b'_', "{name}");
    }
    // No line lost or written twice: the start line is in exactly one file.
    let mut all = rotated();
    all.push(tr.log_file());
    let starts: usize = all
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .matches(" started")
                .count()
        })
        .sum();
    assert_eq!(starts, 1);
    // logrotate moves the file, then sends SIGHUP.
    std::fs::rename(tr.log_file(), logs.join("moved.log")).unwrap();
    let pid = tr.proc.pid().unwrap() as i32;
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    // The line saying so is in the new file at the path (or, as the
    // 300-byte limit rotates quickly, in one rotated from it), not in the
    // moved one.
    let reopened = || {
        let mut files = rotated();
        files.push(tr.log_file());
        files
            .iter()
            .any(|p| std::fs::read_to_string(p).is_ok_and(|l| l.contains("log file reopened")))
    };
    assert!(
        wait_until(Duration::from_secs(5), reopened),
        "no new log file after SIGHUP"
    );
    let moved = std::fs::read_to_string(logs.join("moved.log")).unwrap();
    assert!(!moved.contains("log file reopened"), "{moved}");
    // Still serving, and still running.
    assert_eq!(list_groups(tr.addr).len(), 0);
}

#[test]
fn background_start_under_the_fastdfs_name_restart_and_stop() {
    let dir = TestDir::new("tr-bg");
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let port = free_port(ip);
    let base = dir.join("base");
    let conf = write_conf(&base, "tracker.conf", ip, port, &[]);
    let link = dir.join("fdfs_trackerd");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let pid_file = base.join("data/fdfs_trackerd.pid");
    let _reaper = Reaper(pid_file.clone());
    let addr = SocketAddr::from((ip, port));
    // FastDFS syntax, default action start, forks into the background.
    let st = Command::new(&link).arg(&conf).status().unwrap();
    assert!(st.success());
    assert!(wait_for_port(addr, Duration::from_secs(10)));
    let pid1 = read_pid(&pid_file);
    assert!(pid_alive(pid1));
    assert_ne!(pid1 as u32, std::process::id());
    // restart: a new process on the same port.
    let st = Command::new(&link)
        .arg(&conf)
        .arg("restart")
        .status()
        .unwrap();
    assert!(st.success());
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .is_some_and(|p| p != pid1)
    }));
    assert!(!pid_alive(pid1));
    assert!(wait_for_port(addr, Duration::from_secs(10)));
    let pid2 = read_pid(&pid_file);
    // stop.
    let st = Command::new(&link).arg(&conf).arg("stop").status().unwrap();
    assert!(st.success());
    assert!(!pid_alive(pid2));
    assert!(!pid_file.exists());
}

#[test]
fn disabled_and_bad_configs_refuse_to_start() {
    let dir = TestDir::new("tr-disabled");
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let base = dir.join("base");
    let conf = write_conf(
        &base,
        "tracker.conf",
        ip,
        free_port(ip),
        &["disabled = true"],
    );
    let out = fdfs_tracker(&conf, &["--foreground"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("disabled"));
    assert!(!base.join("data/fdfs_trackerd.pid").exists());
    // base_path missing.
    let conf2 = dir.join("missing.conf");
    write_file(
        &conf2,
        &TrackerProc::conf_text(ip, free_port(ip), &dir.join("nope"), &[]),
    );
    let out = fdfs_tracker(&conf2, &["start", "-f"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("base_path"));
    // Port in use: the error reaches the terminal.
    let busy = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = busy.local_addr().unwrap().port();
    let conf3 = write_conf(&base, "busy.conf", ip, port, &[]);
    let out = fdfs_tracker(&conf3, &["start"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

/// run_by_group / run_by_user: started as root, the tracker becomes that
/// user before it makes any file; an unknown user is refused at start.
#[test]
fn run_by_user_drops_root_before_any_file_is_made() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: reads the credentials only.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: switching users cannot be tried here");
        return;
    }
    let dir = TestDir::new("tr-runas");
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let base = dir.join("base");
    let unknown = write_conf(
        &base,
        "unknown.conf",
        ip,
        free_port(ip),
        &["run_by_user = no-such-user-fdfs"],
    );
    // Bounded: a tracker that wrongly starts must not hang the test.
    let mut child = Command::new(BIN)
        .args([
            "tracker",
            unknown.to_str().unwrap(),
            "start",
            "--foreground",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if !wait_until(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    }) {
        let _ = child.kill();
        panic!("a tracker with an unknown run_by_user started");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run_by_user = no-such-user-fdfs: no such user"),
        "{err}"
    );
    assert!(!base.join("data").exists(), "nothing made before the check");

    // nobody may enter the test folder and owns the base path.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
    let port = free_port(ip);
    let conf = write_conf(
        &base,
        "tracker.conf",
        ip,
        port,
        &["run_by_user = nobody", "run_by_group = nogroup"],
    );
    let mut tr = TrackerProc::start_with_conf(BIN, &conf, SocketAddr::from((ip, port)), &base);
    assert!(
        wait_for_port(tr.addr, Duration::from_secs(10)),
        "{}",
        tr.proc.log_text()
    );
    let pid = tr.proc.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<String> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    // Real, effective, saved and filesystem ids; no supplementary groups.
    assert_eq!(ids("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(ids("Gid:"), ["65534"; 4], "{status}");
    assert_eq!(ids("Groups:"), ["65534"], "{status}");
    for made in [
        "data",
        "logs",
        "logs/trackerd.log",
        "data/fdfs_trackerd.pid",
    ] {
        let m = std::fs::metadata(base.join(made)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{made}");
    }
    assert_eq!(list_groups(tr.addr).len(), 0);
    assert_eq!(tr.stop(), Some(0));
}

//! Typed loaders: includes, repeated keys, defaults, errors and warnings.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_conf::*;

const MIN_STORAGE: &str = "base_path=/srv/fdfs\ntracker_server=127.0.0.1:22122\n";

fn storage(text: &str) -> Result<(StorageConf, Vec<Warning>), ConfError> {
    StorageConf::from_str_with_warnings(text, Path::new("storage.conf"))
}

fn tracker(text: &str) -> Result<(TrackerConf, Vec<Warning>), ConfError> {
    TrackerConf::from_str_with_warnings(text, Path::new("tracker.conf"))
}

fn err_of<T: std::fmt::Debug>(r: Result<T, ConfError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn storage_defaults_when_keys_absent() {
    let (s, w) = storage(MIN_STORAGE).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let d = &s.daemon;
    assert!(!d.disabled);
    assert_eq!(d.bind_addr, "");
    assert_eq!(d.port, 23000);
    assert_eq!(d.connect_timeout, Duration::from_secs(10));
    assert_eq!(d.network_timeout, Duration::from_secs(60));
    assert_eq!(d.max_connections, 256);
    assert_eq!(d.work_threads, 4);
    assert_eq!(d.buff_size, 256 * 1024);
    assert_eq!(d.log_level, LogLevel::Info);
    assert!(d.allow_hosts.is_allow_all());
    assert_eq!((d.run_by_group.as_str(), d.run_by_user.as_str()), ("", ""));
    assert_eq!(s.group_name, "");
    assert_eq!(s.server_id, "");
    assert_eq!(s.store_paths, vec![PathBuf::from("/srv/fdfs")]);
    assert_eq!(s.store_paths_readonly, vec![false]);
    assert_eq!(s.subdir_count_per_path, 256);
    assert_eq!(s.heart_beat_interval, Duration::from_secs(30));
    assert_eq!(s.stat_report_interval, Duration::from_secs(300));
    assert_eq!(s.sync_wait_msec, Duration::from_millis(100));
    assert_eq!(s.sync_start_time, TimeOfDay { hour: 0, minute: 0 });
    assert_eq!(
        s.sync_end_time,
        TimeOfDay {
            hour: 23,
            minute: 59
        }
    );
    assert_eq!(s.file_distribute_path_mode, 0);
    assert_eq!(s.fsync_after_written_bytes, 0);
    assert_eq!(s.sync_binlog_buff_interval, Duration::from_secs(60));
    assert_eq!(s.sync_stat_file_interval, Duration::from_secs(60));
    assert!(s.durable);
    assert_eq!(s.durable_sync, DurableSync::Journal);
    assert_eq!(s.http_server_port, 0);
    assert_eq!(s.http_domain_name, "");
}

#[test]
fn tracker_and_client_and_mod_defaults() {
    let (t, w) = tracker("base_path=/t\n").unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(t.daemon.port, 22122);
    assert_eq!(
        (
            t.store_lookup,
            t.store_server,
            t.store_path,
            t.download_server
        ),
        (0, 0, 0, 0)
    );
    assert!(t.storage_ip_changed_auto_adjust && !t.use_trunk_file && !t.response_ip_addr_ipv6);
    assert!(!t.store_slave_file_use_link && !t.use_connection_pool);
    assert_eq!(t.storage_ids_filename, PathBuf::from("storage_ids.conf"));

    let c = ClientConf::from_str(
        "base_path=/c\ntracker_server=h:1\n",
        Path::new("/etc/fdfs/client.conf"),
    )
    .unwrap();
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(
        c.storage_ids_filename,
        PathBuf::from("/etc/fdfs/storage_ids.conf")
    );
    assert_eq!(c.http_anti_steal_secret_key, "");

    let m = ModFastdfsConf::from_str(
        "base_path=/m\ngroup_name=g1\n",
        Path::new("mod_fastdfs.conf"),
    )
    .unwrap();
    assert_eq!(m.group_count, 0);
    assert_eq!(
        m.groups,
        vec![ModGroup {
            group_name: "g1".into(),
            storage_server_port: 23000,
            store_paths: vec![PathBuf::from("/m")]
        }]
    );
    assert!(!m.url_have_group_name && !m.load_fdfs_parameters_from_tracker && !m.flv_support);
    assert_eq!(m.storage_sync_file_max_delay, Duration::from_secs(86400));
    assert!(m.tracker_servers.is_empty());
}

#[test]
fn storage_full_values() {
    let text = "\
disabled = yes
bind_addr = 127.0.0.11
port = 23001
connect_timeout = 5
network_timeout = 30
base_path = /b
max_connections = 1024
work_threads = 8
buff_size = 512k
log_level = DEBUG
run_by_user = fdfs
group_name = Group2
server_id = 100001
heart_beat_interval = 2
stat_report_interval = 60
sync_wait_msec = 10
sync_interval = 5
sync_start_time = 02:30
sync_end_time = 4:05
store_path_count = 3
store_path1 = /p1
store_path2 = /p2
store_path2_readonly = true
subdir_count_per_path = 4
tracker_server = 127.0.0.1:22122
tracker_server = [::1]:22123
tracker_server = 10.0.0.1,192.168.0.1:22124
file_distribute_path_mode = 1
file_distribute_rotate_count = 7
fsync_after_written_bytes = 1 M
upload_priority = -3
durable = off
durable_sync = SyncFS
http.server_port = 8080
";
    let (s, w) = storage(text).unwrap();
    assert!(s.daemon.disabled);
    assert_eq!(s.daemon.bind_addr, "127.0.0.11");
    assert_eq!(s.daemon.port, 23001);
    assert_eq!(s.daemon.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.daemon.network_timeout, Duration::from_secs(30));
    assert_eq!(s.daemon.max_connections, 1024);
    assert_eq!(s.daemon.work_threads, 8);
    assert_eq!(s.daemon.buff_size, 512 * 1024);
    assert_eq!(s.daemon.log_level, LogLevel::Debug);
    assert_eq!(s.daemon.run_by_user, "fdfs");
    assert_eq!(s.group_name, "Group2");
    assert_eq!(s.server_id, "100001");
    assert_eq!(s.heart_beat_interval, Duration::from_secs(2));
    assert_eq!(s.sync_wait_msec, Duration::from_millis(10));
    assert_eq!(s.sync_interval, Duration::from_millis(5));
    assert_eq!(
        s.sync_start_time,
        TimeOfDay {
            hour: 2,
            minute: 30
        }
    );
    assert_eq!(s.sync_end_time, TimeOfDay { hour: 4, minute: 5 });
    assert_eq!(
        s.store_paths,
        ["/b", "/p1", "/p2"].map(PathBuf::from).to_vec()
    );
    assert_eq!(s.store_paths_readonly, vec![false, false, true]);
    assert_eq!(s.subdir_count_per_path, 4);
    let hosts: Vec<String> = s.tracker_servers.iter().map(|h| h.to_string()).collect();
    assert_eq!(hosts, ["127.0.0.1:22122", "[::1]:22123", "10.0.0.1:22124"]);
    assert_eq!(s.file_distribute_path_mode, 1);
    assert_eq!(s.file_distribute_rotate_count, 7);
    assert_eq!(s.fsync_after_written_bytes, 1 << 20);
    assert_eq!(s.upload_priority, -3);
    assert!(!s.durable);
    assert_eq!(s.durable_sync, DurableSync::Syncfs);
    assert_eq!(s.http_server_port, 8080);
    // The dual address is noted as a warning naming the ignored second one.
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].line, Some(27));
    assert!(w[0].message.contains("192.168.0.1"), "{}", w[0]);
}

#[test]
fn durable_sync_accepts_journal() {
    let (s, _) = storage("base_path=/b\ntracker_server=h:1\ndurable_sync = Journal\n").unwrap();
    assert_eq!(s.durable_sync, DurableSync::Journal);
    assert_eq!(s.journal_file_size, 64 << 20, "the default");
    let (s, _) = storage("base_path=/b\ntracker_server=h:1\njournal_file_size = 256MB\n").unwrap();
    assert_eq!(s.journal_file_size, 256 << 20);
}

#[test]
fn invalid_value_names_file_line_and_key() {
    let e = err_of(storage("base_path=/b\ntracker_server=h:1\nport=abc\n"));
    assert_eq!(e, "storage.conf:3: port: \"abc\" is not a number");
    let cases: &[(&str, &str)] = &[
        ("port=70000", "storage.conf:1: port:"),
        ("port=0", "storage.conf:1: port:"),
        ("buff_size=-1KB", "storage.conf:1: buff_size:"),
        ("buff_size=1.5MB", "storage.conf:1: buff_size:"),
        ("sync_start_time=25:00", "storage.conf:1: sync_start_time:"),
        ("log_level=loud", "storage.conf:1: log_level:"),
        ("durable_sync=fdatasync", "storage.conf:1: durable_sync:"),
        (
            "journal_file_size=512KB",
            "storage.conf:1: journal_file_size:",
        ),
        (
            "journal_file_size=8GB",
            "storage.conf:1: journal_file_size:",
        ),
        ("store_path_count=0", "storage.conf:1: store_path_count:"),
        ("store_path_count=257", "storage.conf:1: store_path_count:"),
        (
            "subdir_count_per_path=0",
            "storage.conf:1: subdir_count_per_path:",
        ),
        (
            "subdir_count_per_path=300",
            "storage.conf:1: subdir_count_per_path:",
        ),
        ("group_name=group_1", "storage.conf:1: group_name:"),
        (
            "group_name=abcdefghijklmnopq",
            "storage.conf:1: group_name:",
        ),
        ("server_id=1234567890123456", "storage.conf:1: server_id:"),
        ("tracker_server=[::1", "storage.conf:1: tracker_server:"),
        ("allow_hosts=10.0.0.0/40", "storage.conf:1: allow_hosts:"),
        (
            "heart_beat_interval=-1",
            "storage.conf:1: heart_beat_interval:",
        ),
    ];
    for (line, want) in cases {
        let e = err_of(storage(&format!("{line}\n{MIN_STORAGE}")));
        assert!(e.starts_with(want), "{line}: {e}");
    }
    let e = err_of(tracker("base_path=/t\nreserved_storage_space=100%\n"));
    assert!(
        e.starts_with("tracker.conf:2: reserved_storage_space:"),
        "{e}"
    );
    let e = err_of(tracker("base_path=/t\nstore_path=1\n"));
    assert!(e.starts_with("tracker.conf:2: store_path:"), "{e}");
    let e = err_of(tracker("base_path=/t\nid_type_in_filename=name\n"));
    assert!(e.starts_with("tracker.conf:2: id_type_in_filename:"), "{e}");
    let e = err_of(tracker(
        "base_path=/t\nslot_min_size=1MB\nslot_max_size=4KB\n",
    ));
    assert!(e.starts_with("tracker.conf:3: slot_max_size:"), "{e}");
}

#[test]
fn missing_required_keys() {
    let e = err_of(storage("tracker_server=h:1\n"));
    assert_eq!(e, "storage.conf: missing required key base_path");
    let e = err_of(storage("base_path=/b\n"));
    assert_eq!(e, "storage.conf: missing required key tracker_server");
    let e = err_of(storage(&format!("store_path_count=2\n{MIN_STORAGE}")));
    assert_eq!(e, "storage.conf: missing required key store_path1");
    let e = err_of(tracker("base_path=/t\nstore_lookup=1\n"));
    assert_eq!(e, "tracker.conf: missing required key store_group");
    let e = err_of(ClientConf::from_str(
        "base_path=/c\n",
        Path::new("client.conf"),
    ));
    assert_eq!(e, "client.conf: missing required key tracker_server");
    let e = err_of(HttpConf::from_str(
        "http.anti_steal.check_token=true\n",
        Path::new("http.conf"),
    ));
    assert_eq!(
        e,
        "http.conf: missing required key http.anti_steal.secret_key"
    );
    let e = err_of(ModFastdfsConf::from_str(
        "base_path=/m\n",
        Path::new("mod.conf"),
    ));
    assert_eq!(e, "mod.conf: missing required key group_name");
}

#[test]
fn too_many_trackers() {
    let mut text = String::from("base_path=/b\n");
    for i in 0..17 {
        text.push_str(&format!("tracker_server=10.0.0.{i}:22122\n"));
    }
    let e = err_of(storage(&text));
    assert!(
        e.starts_with("storage.conf:18: tracker_server: more than 16"),
        "{e}"
    );
}

#[test]
fn unknown_key_and_odd_values_warn() {
    let (s, w) = storage(&format!(
        "{MIN_STORAGE}no_such_key = 1\nuse_connection_pool = maybe\nstore_path3 = /x\n"
    ))
    .unwrap();
    assert!(!s.use_connection_pool);
    let msgs: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m == "storage.conf:3: unknown key no_such_key ignored"),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m
                .starts_with("storage.conf:4: use_connection_pool: \"maybe\" is not a boolean")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("storage.conf:5: store_path3 ignored")),
        "{msgs:?}"
    );
    // Documented upstream keys we do not use are accepted silently.
    let (_, w) = storage(&format!(
        "{MIN_STORAGE}disk_reader_threads=2\nlog_file_keep_days=7\n[access-log]\nenabled=true\n"
    ))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let (_, w) = storage(&format!("{MIN_STORAGE}[weird]\nx=1\n")).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("[weird]"));
}

#[test]
fn repeated_keys() {
    let (s, w) = storage("base_path=/a\nbase_path=/b\ntracker_server=h1:1\ntracker_server=h2:2\ntracker_server=h1:1\n").unwrap();
    assert_eq!(s.daemon.base_path, Path::new("/b"));
    assert_eq!(
        s.tracker_servers
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>(),
        ["h1:1", "h2:2"]
    );
    // Repeated single-valued key and the duplicate tracker both warn.
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].line, Some(2));
    assert_eq!(w[1].line, Some(5));
}

#[test]
fn tracker_values_and_adjustments() {
    let (t, w) = tracker(
        "base_path=/t\nreserved_storage_space = 20.5%\nstore_lookup=1\nstore_group=group2\nuse_trunk_file=true\n\
         slot_min_size=128KB\ntrunk_file_size=1MB\nuse_storage_id=true\nid_type_in_filename=ID\n\
         response_ip_addr_size=IPv6\nstorage_ids_filename=/etc/ids.conf\ncheck_active_interval=0\n",
    )
    .unwrap();
    assert_eq!(t.reserved_storage_space, ReservedSpace::Ratio(0.205));
    assert_eq!(t.store_group, "group2");
    assert_eq!(t.store_server, 1, "forced by use_trunk_file");
    assert_eq!(t.slot_min_size, 64 * 1024);
    assert_eq!(t.trunk_file_size, 4 << 20);
    assert_eq!(t.slot_max_size, 512 * 1024);
    assert!(t.use_storage_id && t.id_type_in_filename_is_id && t.response_ip_addr_ipv6);
    assert_eq!(t.storage_ids_filename, Path::new("/etc/ids.conf"));
    assert_eq!(t.check_active_interval, Duration::from_secs(100));
    // store_server forced, slot_min capped, trunk size raised, 0 interval.
    assert_eq!(w.len(), 4, "{w:?}");
    let (t, _) = tracker("base_path=/t\nreserved_storage_space=4GB\n").unwrap();
    assert_eq!(t.reserved_storage_space, ReservedSpace::Bytes(4 << 30));
}

#[test]
fn tracker_trunk_create_file_keys() {
    let (t, _) = tracker("base_path=/t\n").unwrap();
    assert!(!t.trunk_create_file_advance);
    assert_eq!(
        t.trunk_create_file_time_base,
        TimeOfDay { hour: 2, minute: 0 }
    );
    assert_eq!(t.trunk_create_file_interval, Duration::from_secs(86400));
    assert_eq!(t.trunk_create_file_space_threshold, 0);
    let (t, w) = tracker(
        "base_path=/t\ntrunk_create_file_advance=true\ntrunk_create_file_time_base=00:30\n\
         trunk_create_file_interval=3600\ntrunk_create_file_space_threshold=20G\n",
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(t.trunk_create_file_advance);
    assert_eq!(
        t.trunk_create_file_time_base,
        TimeOfDay {
            hour: 0,
            minute: 30
        }
    );
    assert_eq!(t.trunk_create_file_interval, Duration::from_secs(3600));
    assert_eq!(t.trunk_create_file_space_threshold, 20 << 30);
    let e = err_of(tracker("base_path=/t\ntrunk_create_file_time_base=24:00\n"));
    assert!(e.contains("trunk_create_file_time_base"), "{e}");
}

#[test]
fn includes_relative_and_back_to_global() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(
        dir.path().join("sub/trackers.conf"),
        "tracker_server=10.0.0.1:22122\n[error-log]\nlog_file_keep_days=3\n",
    )
    .unwrap();
    fs::write(dir.path().join("sub/more.conf"), "#include ../ports.conf\n").unwrap();
    fs::write(dir.path().join("ports.conf"), "port=23005\n").unwrap();
    let main = dir.path().join("storage.conf");
    fs::write(
        &main,
        "base_path=/b\n[access-log]\nenabled=true\n#include sub/trackers.conf\ntracker_server=10.0.0.2:22122\n#include sub/more.conf\n",
    )
    .unwrap();
    let (s, w) = StorageConf::load_with_warnings(&main).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        s.tracker_servers.len(),
        2,
        "the line after the include is global again"
    );
    assert_eq!(s.tracker_servers[0].host, "10.0.0.1");
    assert_eq!(s.daemon.port, 23005);
    let ini = IniFile::load(&main).unwrap();
    assert_eq!(ini.section("error-log").unwrap()[0].value, "3");
    assert_eq!(
        ini.get(None, "port").unwrap().file,
        dir.path().join("sub/../ports.conf")
    );

    // from_str resolves includes against the given path's directory too.
    let s = StorageConf::from_str("base_path=/b\n#include sub/trackers.conf\n", &main).unwrap();
    assert_eq!(s.tracker_servers[0].host, "10.0.0.1");
}

#[test]
fn include_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("storage.conf");
    fs::write(&main, "base_path=/b\n#include nothere.conf\n").unwrap();
    let e = err_of(StorageConf::load(&main));
    assert!(
        e.starts_with(&format!("{}:2: #include nothere.conf:", main.display())),
        "{e}"
    );
    assert!(
        e.contains(&dir.path().join("nothere.conf").display().to_string()),
        "{e}"
    );

    fs::write(dir.path().join("a.conf"), "#include b.conf\n").unwrap();
    fs::write(dir.path().join("b.conf"), "x=1\n#include ./a.conf\n").unwrap();
    let e = err_of(IniFile::load(&dir.path().join("a.conf")));
    assert!(e.contains("include loop"), "{e}");
    assert!(e.contains("b.conf:2"), "{e}");

    fs::write(dir.path().join("self.conf"), "#include self.conf\n").unwrap();
    assert!(err_of(IniFile::load(&dir.path().join("self.conf"))).contains("loop"));
}

#[test]
fn io_error_names_the_file() {
    let e = err_of(TrackerConf::load(Path::new(
        "/nonexistent/dir/tracker.conf",
    )));
    assert!(e.starts_with("/nonexistent/dir/tracker.conf: "), "{e}");
    let e = err_of(StorageIds::load(Path::new("/nonexistent/ids.conf")));
    assert!(e.starts_with("/nonexistent/ids.conf: "), "{e}");
}

#[test]
fn mod_fastdfs_group_rules() {
    let p = Path::new("mod_fastdfs.conf");
    let e = err_of(ModFastdfsConf::from_str(
        "base_path=/m\ngroup_count=1\n[group1]\ngroup_name=g\n",
        p,
    ));
    assert_eq!(
        e,
        "mod_fastdfs.conf:2: url_have_group_name must be true when group_count > 0"
    );
    let e = err_of(ModFastdfsConf::from_str(
        "base_path=/m\nurl_have_group_name=true\ngroup_count=2\n[group1]\ngroup_name=g\n",
        p,
    ));
    assert!(e.contains("[group2]"), "{e}");
    let e = err_of(ModFastdfsConf::from_str(
        "base_path=/m\nurl_have_group_name=true\ngroup_count=1\n[group1]\nstore_path_count=2\ngroup_name=g\n",
        p,
    ));
    assert_eq!(
        e,
        "mod_fastdfs.conf: missing required key store_path1 in section [group1]"
    );
    let (m, w) = ModFastdfsConf::from_str_with_warnings(
        "base_path=/m\nurl_have_group_name=true\nstorage_server_port=23001\nresponse_mode=redirect\ngroup_count=1\n\
         [group1]\ngroup_name=g1\nstore_path_count=2\nstore_path0=/a\nstore_path1=/b\nbogus=1\n[group9]\nx=1\n",
        p,
    )
    .unwrap();
    assert_eq!(m.response_mode, ResponseMode::Redirect);
    assert_eq!(
        m.groups[0].storage_server_port, 23001,
        "inherits the global port"
    );
    assert_eq!(
        m.groups[0].store_paths,
        [PathBuf::from("/a"), PathBuf::from("/b")]
    );
    let msgs: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("unknown key bogus")));
    assert!(msgs.iter().any(|m| m.contains("[group9]")));
    let e = err_of(ModFastdfsConf::from_str(
        "base_path=/m\ngroup_name=g\nload_fdfs_parameters_from_tracker=true\n",
        p,
    ));
    assert_eq!(e, "mod_fastdfs.conf: missing required key tracker_server");
}

#[test]
fn log_rotation_keys_and_their_old_names() {
    let (t, w) = tracker("base_path=/srv/fdfs\n").unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        t.daemon.log_rotation,
        LogRotation {
            everyday: true,
            time: TimeOfDay { hour: 0, minute: 0 },
            on_size: 0,
            keep_days: 15,
            compress_old: false,
            compress_days_before: 1,
            delete_old_time: TimeOfDay {
                hour: 1,
                minute: 30
            },
        }
    );
    let (s, w) = storage(&format!(
        "{MIN_STORAGE}log_file_rotate_everyday=false\nlog_file_rotate_time=03:30\n\
         log_file_rotate_on_size=512MB\nlog_file_keep_days=0\n\
         log_file_compress_old=true\nlog_file_compress_days_before=7\n\
         log_file_delete_old_time=02:45\n"
    ))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        s.daemon.log_rotation,
        LogRotation {
            everyday: false,
            time: TimeOfDay {
                hour: 3,
                minute: 30
            },
            on_size: 512 << 20,
            keep_days: 0,
            compress_old: true,
            compress_days_before: 7,
            delete_old_time: TimeOfDay {
                hour: 2,
                minute: 45
            },
        }
    );
    // A V5 file has only the old names; the new ones win when both are set.
    let (t, w) = tracker(
        "base_path=/srv/fdfs\nrotate_error_log=false\nerror_log_rotate_time=01:00\n\
         rotate_error_log_size=1GB\n",
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let r = t.daemon.log_rotation;
    assert_eq!(
        (r.everyday, r.time, r.on_size),
        (false, TimeOfDay { hour: 1, minute: 0 }, 1 << 30)
    );
    let (t, w) =
        tracker("base_path=/srv/fdfs\nrotate_error_log=false\nlog_file_rotate_everyday=true\n")
            .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(t.daemon.log_rotation.everyday);
    let e = err_of(tracker(
        "base_path=/srv/fdfs\nlog_file_rotate_on_size=65GB\n",
    ));
    assert!(
        e.contains("log_file_rotate_on_size") && e.contains("64GB"),
        "{e}"
    );
    let e = err_of(tracker("base_path=/srv/fdfs\nlog_file_rotate_time=25:00\n"));
    assert!(e.contains("log_file_rotate_time"), "{e}");
    let e = err_of(tracker(
        "base_path=/srv/fdfs\nlog_file_delete_old_time=01:60\n",
    ));
    assert!(e.contains("log_file_delete_old_time"), "{e}");
    let e = err_of(tracker(
        "base_path=/srv/fdfs\nlog_file_compress_days_before=-1\n",
    ));
    assert!(e.contains("log_file_compress_days_before"), "{e}");
}

#[test]
fn log_sections_override_the_global_rotation_and_enable_the_access_log() {
    let (s, w) = storage(&format!(
        "{MIN_STORAGE}log_file_keep_days = 30\n\
         [error-log]\nlog_file_rotate_on_size = 1GB\n\
         [access-log]\nenabled = true\ntime_precision = us\nlog_file_rotate_time = 04:00\n"
    ))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let e = s.daemon.log_rotation;
    assert_eq!((e.on_size, e.keep_days), (1 << 30, 30));
    let a = s.access_log.unwrap();
    assert!(a.micros);
    // The section's own key, over the global ones it inherits.
    assert_eq!(a.rotation.time, TimeOfDay { hour: 4, minute: 0 });
    assert_eq!((a.rotation.on_size, a.rotation.keep_days), (0, 30));
    // The compression keys and the deletion time: global, then each
    // section's own.
    let (s, w) = storage(&format!(
        "{MIN_STORAGE}log_file_compress_old = true\nlog_file_compress_days_before = 7\n\
         [error-log]\nlog_file_compress_days_before = 0\nlog_file_delete_old_time = 03:15\n\
         [access-log]\nenabled = true\nlog_file_compress_old = false\n"
    ))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let e = s.daemon.log_rotation;
    assert_eq!(
        (e.compress_old, e.compress_days_before, e.delete_old_time),
        (
            true,
            0,
            TimeOfDay {
                hour: 3,
                minute: 15
            }
        )
    );
    let a = s.access_log.unwrap().rotation;
    assert_eq!(
        (a.compress_old, a.compress_days_before, a.delete_old_time),
        (
            false,
            7,
            TimeOfDay {
                hour: 1,
                minute: 30
            }
        )
    );
    // Off unless asked; the V5 name turns it on too.
    assert!(storage(MIN_STORAGE).unwrap().0.access_log.is_none());
    let (s, w) = storage(&format!("{MIN_STORAGE}use_access_log = true\n")).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(!s.access_log.unwrap().micros);
    let (_, w) = storage(&format!(
        "{MIN_STORAGE}[access-log]\nenabled = true\ntime_precision = s\nbogus = 1\n"
    ))
    .unwrap();
    let text = format!("{w:?}");
    assert!(
        text.contains("time_precision") && text.contains("bogus"),
        "{text}"
    );
    let (_, w) = tracker("base_path=/srv/fdfs\nuse_access_log = false\n").unwrap();
    assert!(w.is_empty(), "{w:?}");
}

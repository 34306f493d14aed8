//! The configuration snippets of the deployment guide
//! (/work/shared/seed/000_e8759460b3190220.txt), copied byte for byte into
//! tests/data/guide/, must load with the values the guide means.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_conf::*;

fn guide(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/guide")
        .join(name)
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.into(),
        port,
    }
}

#[test]
fn snippets_are_verbatim_with_chinese_comments() {
    let storage = std::fs::read_to_string(guide("storage.conf")).unwrap();
    assert!(storage.contains("# 配置文件是否不生效，false 为生效\ndisabled=false \n"));
    let tracker = std::fs::read_to_string(guide("tracker.conf")).unwrap();
    assert!(tracker.starts_with("#默认256，最大连接数\nmax_connections=1024 \n"));
}

#[test]
fn tracker_snippet() {
    let (t, warnings) = TrackerConf::load_with_warnings(&guide("tracker.conf")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(t.daemon.max_connections, 1024);
    assert_eq!(t.daemon.port, 22122);
    assert_eq!(t.daemon.base_path, Path::new("/data/fastdfs/tracker"));
    // Everything else at its built-in default.
    assert!(!t.daemon.disabled);
    assert_eq!(t.daemon.connect_timeout, Duration::from_secs(10));
    assert_eq!(t.daemon.network_timeout, Duration::from_secs(60));
    assert_eq!(t.daemon.work_threads, 4);
    assert_eq!(t.daemon.buff_size, 256 * 1024);
    assert_eq!(t.daemon.log_level, LogLevel::Info);
    assert!(t.daemon.allow_hosts.allows("203.0.113.9".parse().unwrap()));
    assert_eq!(t.store_lookup, 0);
    assert_eq!(t.reserved_storage_space, ReservedSpace::Bytes(1 << 30));
    assert_eq!(t.check_active_interval, Duration::from_secs(100));
    assert_eq!(t.storage_sync_file_max_delay, Duration::from_secs(86400));
    assert_eq!(t.storage_sync_file_max_time, Duration::from_secs(300));
    assert_eq!(t.trunk_file_size, 64 << 20);
    assert_eq!(t.slot_min_size, 256);
    assert_eq!(t.slot_max_size, 8 << 20);
    assert!(!t.use_storage_id && !t.id_type_in_filename_is_id);
    assert_eq!(t.storage_ids_filename, guide("storage_ids.conf"));
    assert!(t.trust_storage_server_id);
    assert_eq!(t.connection_pool_max_idle_time, Duration::from_secs(3600));
}

#[test]
fn storage_snippet() {
    let (s, warnings) = StorageConf::load_with_warnings(&guide("storage.conf")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!s.daemon.disabled);
    assert_eq!(s.group_name, "group1");
    assert_eq!(s.daemon.port, 23000);
    assert_eq!(s.heart_beat_interval, Duration::from_secs(30));
    assert_eq!(s.daemon.base_path, Path::new("/data/fastdfs/storage"));
    assert_eq!(s.store_paths, vec![PathBuf::from("/data01/fastdfs")]);
    assert_eq!(s.store_paths_readonly, vec![false]);
    assert_eq!(s.subdir_count_per_path, 256);
    assert_eq!(
        s.tracker_servers,
        vec![hp("192.168.11.80", 22122), hp("192.168.11.81", 22122)]
    );
    assert_eq!(s.sync_start_time, TimeOfDay { hour: 0, minute: 0 });
    assert_eq!(
        s.sync_end_time,
        TimeOfDay {
            hour: 23,
            minute: 59
        }
    );
    assert_eq!(s.http_server_port, 8888);
    // Defaults.
    assert_eq!(s.stat_report_interval, Duration::from_secs(300));
    assert_eq!(s.sync_wait_msec, Duration::from_millis(100));
    assert_eq!(s.sync_interval, Duration::ZERO);
    assert_eq!(s.write_mark_file_freq, 500);
    assert_eq!(s.file_distribute_rotate_count, 100);
    assert_eq!(s.upload_priority, 10);
    assert!(s.client_bind && s.check_store_path_mark && s.durable);
    assert!(!s.compress_binlog && !s.use_connection_pool);
}

#[test]
fn client_snippet() {
    let (c, warnings) = ClientConf::load_with_warnings(&guide("client.conf")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.base_path, Path::new("/data/fastdfs/client"));
    assert_eq!(
        c.tracker_servers,
        vec![hp("192.168.11.80", 22122), hp("192.168.11.81", 22122)]
    );
    assert_eq!(c.http_tracker_server_port, 80);
    assert_eq!(c.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.network_timeout, Duration::from_secs(60));
    assert!(!c.load_fdfs_parameters_from_tracker && !c.use_storage_id);
}

fn check_mod_groups(m: &ModFastdfsConf) {
    assert_eq!(m.base_path, Path::new("/data/fastdfs"));
    assert_eq!(m.connect_timeout, Duration::from_secs(10));
    assert_eq!(m.network_timeout, Duration::from_secs(30));
    assert_eq!(
        m.tracker_servers,
        vec![hp("192.168.11.80", 22122), hp("192.168.11.81", 22122)]
    );
    assert!(m.url_have_group_name);
    assert_eq!(m.group_count, 2);
    let want = |name: &str| ModGroup {
        group_name: name.into(),
        storage_server_port: 23000,
        store_paths: vec![PathBuf::from("/data01/fastdfs")],
    };
    assert_eq!(m.groups, vec![want("group1"), want("group2")]);
    assert_eq!(m.response_mode, ResponseMode::Proxy);
    assert_eq!(m.flv_extension, "flv");
}

#[test]
fn mod_fastdfs_snippet() {
    let (m, warnings) = ModFastdfsConf::load_with_warnings(&guide("mod_fastdfs.conf")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    check_mod_groups(&m);
    // No #include http.conf in the snippet: built-in http defaults.
    assert_eq!(m.http, HttpConf::default());
}

#[test]
fn mod_fastdfs_snippet_with_http_conf_include() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(guide("mod_fastdfs.conf")).unwrap();
    text.push_str("#include http.conf\n");
    std::fs::write(dir.path().join("mod_fastdfs.conf"), text).unwrap();
    std::fs::copy(guide("http.conf"), dir.path().join("http.conf")).unwrap();
    let (m, warnings) =
        ModFastdfsConf::load_with_warnings(&dir.path().join("mod_fastdfs.conf")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    check_mod_groups(&m);
    assert_eq!(m.http.default_content_type, "application/octet-stream");
    assert_eq!(
        m.http.mime_types_filename,
        Some(dir.path().join("mime.types"))
    );
    assert!(!m.http.anti_steal_check_token);
    assert_eq!(m.http.anti_steal_token_ttl, Duration::from_secs(900));
    assert_eq!(m.http.anti_steal_secret_key, "FastDFS1234567890");
    assert_eq!(
        m.http.anti_steal_token_check_fail,
        Some(PathBuf::from("/home/yuqing/fastdfs/conf/anti-steal.jpg"))
    );
    assert!(m.http.multi_range_enabled);
    // The http.conf alone loads the same way.
    let h = HttpConf::load(&guide("http.conf")).unwrap();
    assert_eq!(h.anti_steal_token_ttl, Duration::from_secs(900));
    assert_eq!(h.mime_types_filename, Some(guide("mime.types")));
}

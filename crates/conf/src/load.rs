//! The typed loaders: one function per file kind turning an [`IniFile`]
//! into its struct with CONFIG.md's built-in defaults, plus the public
//! `load` / `from_str` entry points.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::allow::{system_resolver, AllowHosts};
use crate::error::{ConfError, Warning};
use crate::ini::IniFile;
use crate::reader::{resolve, Reader};
use crate::types::*;
use crate::value::{self, is_valid_group_name, parse_int};

/// Most tracker_server lines a storage or client accepts.
pub const MAX_TRACKERS: usize = 16;
/// Default tracker port when a tracker_server line has none.
pub const TRACKER_DEFAULT_PORT: u16 = 22122;
/// Default storage port.
pub const STORAGE_DEFAULT_PORT: u16 = 23000;

const KB: u64 = 1024;
const MB: u64 = 1024 * KB;

/// `journal_file_size` (ours): each of the two journal files. At least
/// 1MB, so an entry with the largest file image always fits; at most 4GB.
fn journal_file_size(r: &mut Reader) -> Result<u64, ConfError> {
    r.parse("journal_file_size", 64 * MB, |s| {
        let size = value::parse_bytes(s)?;
        if !(MB..=4096 * MB).contains(&size) {
            return Err(format!("{s:?} is out of range (1MB..4GB)"));
        }
        Ok(size)
    })
}

/// Documented daemon keys (CONFIG.md §2) we accept but do not use.
const DAEMON_ACCEPTED: &[&str] = &[
    "address_family",
    "inner_bind_addr",
    "outer_bind_addr",
    "inner_port",
    "outer_port",
    "accept_threads",
    "min_buff_size",
    "max_buff_size",
    "thread_stack_size",
    "tcp_quick_ack",
    "use_io_uring",
    "use_send_zc",
    "sync_log_buff_interval",
    // Pre-6.x names still found in old files, read when the current names
    // are absent.
    "rotate_error_log",
    "error_log_rotate_time",
    "rotate_error_log_size",
    "rotate_access_log",
    "access_log_rotate_time",
    "rotate_access_log_size",
];

const TRACKER_ACCEPTED: &[&str] = &[
    // The tracker keeps no access log.
    "use_access_log",
    "trunk_free_space_merge",
    "delete_unused_trunk_files",
    "trunk_init_check_occupying",
    "trunk_init_reload_from_binlog",
    "trunk_compress_binlog_min_interval",
    "trunk_compress_binlog_interval",
    "trunk_compress_binlog_time_base",
];

const STORAGE_ACCEPTED: &[&str] = &[
    "disk_rw_separated",
    "disk_reader_threads",
    "disk_writer_threads",
    "sync_min_threads",
    "sync_max_threads",
    "check_file_duplicate",
    "file_signature_method",
    "key_namespace",
    "keep_alive",
    "compress_binlog_time",
    "storage_http_port",
    "http.disabled",
];

/// Sections whose keys we do not check (logging overrides).
const LOG_SECTIONS: &[&str] = &["error-log", "access-log"];

macro_rules! conf_file {
    ($t:ty, $build:path, $what:literal) => {
        impl $t {
            #[doc = concat!("Reads ", $what, " (and its includes).")]
            pub fn load(path: &Path) -> Result<Self, ConfError> {
                Self::load_with_warnings(path).map(|(c, _)| c)
            }

            #[doc = concat!("Parses ", $what, " text as if read from `path` (includes are read relative to its directory).")]
            pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfError> {
                Self::from_str_with_warnings(text, path).map(|(c, _)| c)
            }

            /// Like `load`, also returning the warnings (unknown keys...).
            pub fn load_with_warnings(path: &Path) -> Result<(Self, Vec<Warning>), ConfError> {
                Self::from_ini(&IniFile::load(path)?)
            }

            /// Like `from_str`, also returning the warnings.
            pub fn from_str_with_warnings(
                text: &str,
                path: &Path,
            ) -> Result<(Self, Vec<Warning>), ConfError> {
                Self::from_ini(&IniFile::from_text(text, path)?)
            }

            /// Builds from an already parsed file; warnings include the parser's.
            pub fn from_ini(ini: &IniFile) -> Result<(Self, Vec<Warning>), ConfError> {
                let mut warnings = ini.warnings().to_vec();
                let conf = $build(ini, &mut warnings)?;
                Ok((conf, warnings))
            }
        }
    };
}

conf_file!(TrackerConf, build_tracker, "tracker.conf");
conf_file!(StorageConf, build_storage, "storage.conf");
conf_file!(ClientConf, build_client, "client.conf");
conf_file!(HttpConf, build_http, "http.conf");
conf_file!(ModFastdfsConf, build_mod_fastdfs, "mod_fastdfs.conf");

/// Warns about sections other than `allowed` (and `[groupN]` when `groups`).
fn check_sections(ini: &IniFile, allowed: &[&str], warnings: &mut Vec<Warning>) {
    for s in ini.sections() {
        if !allowed.contains(&s.name.as_str()) {
            let line = s.entries.first().map(|e| e.line);
            warnings.push(Warning::new(
                ini.path(),
                line,
                format!("unknown section [{}] ignored", s.name),
            ));
        }
    }
}

fn daemon(r: &mut Reader<'_, '_>, default_port: u16) -> Result<DaemonConf, ConfError> {
    r.accept(DAEMON_ACCEPTED);
    let disabled = r.bool("disabled", false);
    let bind_addr = r.string("bind_addr", "");
    let port = r.int("port", default_port, 1, u16::MAX)?;
    let connect_timeout = r.period("connect_timeout", 10)?;
    let network_timeout = r.period("network_timeout", 60)?;
    let base_path = PathBuf::from(&r.required("base_path")?.value);
    let max_connections = r.int("max_connections", 256u32, 1, 1 << 24)?;
    let work_threads = r.int("work_threads", 4u32, 1, 1024)?;
    let mut buff_size = r.bytes("buff_size", 256 * KB)?;
    if buff_size < 8 * KB {
        let e = r.ini().get(None, "buff_size");
        r.warn(
            e,
            format!("buff_size: {buff_size} is below the minimum; using 8KB"),
        );
        buff_size = 8 * KB;
    }
    let log_level = r.log_level()?;
    let log_rotation = error_log_rotation(r)?;
    let allow_hosts = allow_hosts(r)?;
    Ok(DaemonConf {
        disabled,
        bind_addr,
        port,
        connect_timeout,
        network_timeout,
        base_path,
        max_connections,
        work_threads,
        buff_size,
        log_level,
        log_rotation,
        allow_hosts,
        run_by_group: r.string("run_by_group", ""),
        run_by_user: r.string("run_by_user", ""),
        metrics_port: r.int("metrics_port", 0u16, 0, u16::MAX)?,
    })
}

/// `log_file_rotate_*`, `log_file_keep_days`, `log_file_compress_*` and
/// `log_file_delete_old_time` over `base`; `old`: the
/// pre-6.x names of the first three (`rotate_error_log`...), read when the
/// current names are absent.
fn log_rotation(
    r: &mut Reader<'_, '_>,
    base: LogRotation,
    old: Option<[&'static str; 3]>,
) -> Result<LogRotation, ConfError> {
    let pick = |r: &mut Reader<'_, '_>, new: &'static str, i: usize| match old {
        Some(o) if r.entry(new).is_none() && r.entry(o[i]).is_some() => o[i],
        _ => new,
    };
    let k = pick(r, "log_file_rotate_everyday", 0);
    let everyday = r.bool(k, base.everyday);
    let k = pick(r, "log_file_rotate_time", 1);
    let time = r.time(k, base.time)?;
    let k = pick(r, "log_file_rotate_on_size", 2);
    let on_size = r.parse(k, base.on_size, |s| {
        let size = value::parse_bytes(s)?;
        if size > 64 * 1024 * MB {
            return Err(format!("{s:?} is over the limit of 64GB"));
        }
        Ok(size)
    })?;
    Ok(LogRotation {
        everyday,
        time,
        on_size,
        keep_days: r.int("log_file_keep_days", base.keep_days, 0, 36500)?,
        compress_old: r.bool("log_file_compress_old", base.compress_old),
        compress_days_before: r.int(
            "log_file_compress_days_before",
            base.compress_days_before,
            0,
            36500,
        )?,
        delete_old_time: r.time("log_file_delete_old_time", base.delete_old_time)?,
    })
}

/// Keys of a log section (`[error-log]`, `[access-log]`) we accept unused.
const LOG_SECTION_ACCEPTED: &[&str] = &["sync_log_buff_interval"];

/// The rotation of the daemon's own log: the global keys, then an
/// `[error-log]` section's over them.
fn error_log_rotation(r: &mut Reader<'_, '_>) -> Result<LogRotation, ConfError> {
    let old = [
        "rotate_error_log",
        "error_log_rotate_time",
        "rotate_error_log_size",
    ];
    let global = log_rotation(r, LogRotation::default(), Some(old))?;
    let ini = r.ini();
    let mut section = Reader::new(ini, Some("error-log"), &mut *r.warnings);
    section.accept(LOG_SECTION_ACCEPTED);
    let rotation = log_rotation(&mut section, global, None)?;
    section.finish();
    Ok(rotation)
}

/// storage.conf's access log: `[access-log] enabled` (6.14+) or the older
/// global `use_access_log`; its rotation inherits the global keys (or the
/// older `rotate_access_log`...), overridden in the section.
fn access_log(r: &mut Reader<'_, '_>) -> Result<Option<AccessLogConf>, ConfError> {
    let old = [
        "rotate_access_log",
        "access_log_rotate_time",
        "rotate_access_log_size",
    ];
    let global = log_rotation(r, LogRotation::default(), Some(old))?;
    let old_enabled = r.bool("use_access_log", false);
    let ini = r.ini();
    let mut section = Reader::new(ini, Some("access-log"), &mut *r.warnings);
    section.accept(LOG_SECTION_ACCEPTED);
    let enabled = section.bool("enabled", old_enabled);
    let micros = match section.entry("time_precision") {
        None => false,
        Some(e) => match e.value.trim().to_ascii_lowercase().as_str() {
            "ms" | "millisecond" => false,
            "us" | "microsecond" => true,
            other => {
                let msg = format!("time_precision: {other:?} is not ms or us; using ms");
                section.warn(Some(e), msg);
                false
            }
        },
    };
    let rotation = log_rotation(&mut section, global, None)?;
    section.finish();
    Ok(enabled.then_some(AccessLogConf { rotation, micros }))
}

fn allow_hosts(r: &mut Reader<'_, '_>) -> Result<AllowHosts, ConfError> {
    let entries = r.all("allow_hosts");
    if entries.is_empty() {
        return Ok(AllowHosts::allow_all());
    }
    let mut a = AllowHosts::deny_all();
    for e in entries {
        let mut ws = Vec::new();
        a.add(&e.value, &system_resolver, &mut ws)
            .map_err(|m| Reader::invalid(e, m))?;
        for w in ws {
            r.warn(Some(e), format!("allow_hosts: {w}"));
        }
    }
    Ok(a)
}

fn group_name(r: &mut Reader<'_, '_>, key: &str, required: bool) -> Result<String, ConfError> {
    match r.entry(key) {
        Some(e) if !e.value.is_empty() => {
            if is_valid_group_name(&e.value) {
                Ok(e.value.clone())
            } else {
                Err(Reader::invalid(
                    e,
                    format!("{:?} is not a group name (1 to 16 of A-Z a-z 0-9)", e.value),
                ))
            }
        }
        _ if required => Err(r.missing(key)),
        _ => Ok(String::new()),
    }
}

fn build_tracker(ini: &IniFile, w: &mut Vec<Warning>) -> Result<TrackerConf, ConfError> {
    check_sections(ini, LOG_SECTIONS, w);
    let mut r = Reader::new(ini, None, w);
    r.accept(TRACKER_ACCEPTED);
    // Old tracker.conf files `#include http.conf`; those keys are obsolete.
    r.accept_prefix("http.");
    let daemon = daemon(&mut r, TRACKER_DEFAULT_PORT)?;
    let response_ip_addr_ipv6 = r
        .entry("response_ip_addr_size")
        .is_some_and(|e| !e.value.eq_ignore_ascii_case("auto"));
    let store_lookup = r.int("store_lookup", 0u8, 0, 2)?;
    let store_group = group_name(&mut r, "store_group", store_lookup == 1)?;
    let mut store_server = r.int("store_server", 0u8, 0, 2)?;
    let store_path = r.parse("store_path", 0u8, |s| match parse_int::<u8>(s)? {
        v @ (0 | 2) => Ok(v),
        _ => Err(format!("{s:?} must be 0 (round robin) or 2 (load balance)")),
    })?;
    let download_server = r.int("download_server", 0u8, 0, 1)?;
    let reserved_storage_space = r.parse(
        "reserved_storage_space",
        ReservedSpace::Bytes(1024 * MB),
        value::parse_reserved,
    )?;
    let check_active_interval = r.period("check_active_interval", 100)?;
    let storage_ip_changed_auto_adjust = r.bool("storage_ip_changed_auto_adjust", true);
    let storage_sync_file_max_delay = r.secs("storage_sync_file_max_delay", 86400)?;
    let storage_sync_file_max_time = r.secs("storage_sync_file_max_time", 300)?;
    let use_trunk_file = r.bool("use_trunk_file", false);
    if use_trunk_file && store_server == 0 {
        let e = r.ini().get(None, "store_server");
        r.warn(
            e,
            "store_server: round robin is not possible with use_trunk_file; using 1",
        );
        store_server = 1;
    }
    let mut slot_min_size = r.bytes("slot_min_size", 256)?;
    if slot_min_size > 64 * KB {
        let e = r.ini().get(None, "slot_min_size");
        r.warn(e, "slot_min_size: capped to 64KB");
        slot_min_size = 64 * KB;
    }
    // CONFIG.md §3: slots are multiples of it, and none is smaller.
    let trunk_alloc_alignment_size = r.bytes("trunk_alloc_alignment_size", 0)?.min(64 * KB);
    if slot_min_size < trunk_alloc_alignment_size {
        slot_min_size = trunk_alloc_alignment_size;
    }
    let mut trunk_file_size = r.bytes("trunk_file_size", 64 * MB)?;
    if trunk_file_size < 4 * MB {
        let e = r.ini().get(None, "trunk_file_size");
        r.warn(e, "trunk_file_size: raised to the minimum 4MB");
        trunk_file_size = 4 * MB;
    }
    let mut slot_max_size = r.bytes("slot_max_size", trunk_file_size / 8)?;
    if slot_max_size > trunk_file_size / 2 {
        let e = r.ini().get(None, "slot_max_size");
        r.warn(e, "slot_max_size: capped to trunk_file_size / 2");
        slot_max_size = trunk_file_size / 2;
    }
    if slot_max_size <= slot_min_size {
        let msg = format!("{slot_max_size} must be greater than slot_min_size ({slot_min_size})");
        return Err(match r.ini().get(None, "slot_max_size") {
            Some(e) => Reader::invalid(e, msg),
            None => ConfError::Syntax {
                file: ini.path().to_path_buf(),
                line: None,
                message: format!("slot_max_size {msg}"),
            },
        });
    }
    let use_storage_id = r.bool("use_storage_id", false);
    let storage_ids_filename = r.rel_path("storage_ids_filename", "storage_ids.conf");
    let id_type_in_filename_is_id = r.parse("id_type_in_filename", false, |s| {
        match s.to_ascii_lowercase().as_str() {
            "ip" => Ok(false),
            "id" => Ok(true),
            _ => Err(format!("{s:?} must be ip or id")),
        }
    })?;
    let conf = TrackerConf {
        daemon,
        response_ip_addr_ipv6,
        store_lookup,
        store_group,
        store_server,
        store_path,
        download_server,
        reserved_storage_space,
        check_active_interval,
        storage_ip_changed_auto_adjust,
        storage_sync_file_max_delay,
        storage_sync_file_max_time,
        use_trunk_file,
        slot_min_size,
        slot_max_size,
        trunk_file_size,
        trunk_alloc_alignment_size,
        trunk_create_file_advance: r.bool("trunk_create_file_advance", false),
        trunk_create_file_time_base: r.time(
            "trunk_create_file_time_base",
            TimeOfDay { hour: 2, minute: 0 },
        )?,
        trunk_create_file_interval: r.period("trunk_create_file_interval", 86400)?,
        trunk_create_file_space_threshold: r.bytes("trunk_create_file_space_threshold", 0)?,
        trunk_binlog_max_backups: r.int("trunk_binlog_max_backups", 0u32, 0, 10_000)?,
        use_storage_id,
        storage_ids_filename,
        id_type_in_filename_is_id,
        trust_storage_server_id: r.bool("trust_storage_server_id", true),
        store_slave_file_use_link: r.bool("store_slave_file_use_link", false),
        use_connection_pool: r.bool("use_connection_pool", false),
        connection_pool_max_idle_time: r.secs("connection_pool_max_idle_time", 3600)?,
        stat_layout: r.parse("stat_layout", StatLayout::V6_16, |s| match s {
            "6.16" => Ok(StatLayout::V6_16),
            "6.10" => Ok(StatLayout::V6_10),
            _ => Err(format!(
                "{s:?} must be 6.16 (current list records) or 6.10 (for old clients)"
            )),
        })?,
    };
    r.finish();
    Ok(conf)
}

/// store_path0..N-1 (store_path0 defaults to `base`) and their _readonly flags.
fn store_paths(
    r: &mut Reader<'_, '_>,
    count: u32,
    base: &Path,
) -> Result<(Vec<PathBuf>, Vec<bool>), ConfError> {
    let mut paths = Vec::new();
    let mut readonly = Vec::new();
    for i in 0..count {
        let key = format!("store_path{i}");
        let path = match r.entry(&key) {
            Some(e) if !e.value.is_empty() => PathBuf::from(&e.value),
            _ if i == 0 => base.to_path_buf(),
            _ => return Err(r.missing(&key)),
        };
        paths.push(path);
        readonly.push(r.bool(&format!("store_path{i}_readonly"), false));
    }
    // A store_pathN beyond the count is most likely a forgotten count bump.
    let extra: Vec<_> = r
        .ini()
        .entries(None)
        .iter()
        .filter(|e| {
            e.key
                .strip_prefix("store_path")
                .map(|n| n.strip_suffix("_readonly").unwrap_or(n))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= count)
        })
        .collect();
    for e in extra {
        r.accept(&[&e.key]);
        r.warn(
            Some(e),
            format!("{} ignored: store_path_count is {count}", e.key),
        );
    }
    Ok((paths, readonly))
}

fn build_storage(ini: &IniFile, w: &mut Vec<Warning>) -> Result<StorageConf, ConfError> {
    check_sections(ini, LOG_SECTIONS, w);
    let mut r = Reader::new(ini, None, w);
    r.accept(STORAGE_ACCEPTED);
    let daemon = daemon(&mut r, STORAGE_DEFAULT_PORT)?;
    let group_name = group_name(&mut r, "group_name", false)?;
    let server_id = r.parse("server_id", String::new(), |s| {
        if s.len() > 15 {
            Err(format!("{s:?} is longer than 15 characters"))
        } else {
            Ok(s.to_string())
        }
    })?;
    let store_path_count = r.int("store_path_count", 1u32, 1, 256)?;
    let (store_paths, store_paths_readonly) =
        store_paths(&mut r, store_path_count, &daemon.base_path)?;
    let tracker_servers = r.host_ports("tracker_server", TRACKER_DEFAULT_PORT)?;
    check_trackers(&mut r, &tracker_servers, true)?;
    let conf = StorageConf {
        group_name,
        client_bind: r.bool("client_bind", true),
        server_id,
        heart_beat_interval: r.period("heart_beat_interval", 30)?,
        stat_report_interval: r.period("stat_report_interval", 300)?,
        sync_wait_msec: r.millis("sync_wait_msec", 100)?,
        sync_interval: r.millis("sync_interval", 0)?,
        sync_start_time: r.time("sync_start_time", TimeOfDay { hour: 0, minute: 0 })?,
        sync_end_time: r.time(
            "sync_end_time",
            TimeOfDay {
                hour: 23,
                minute: 59,
            },
        )?,
        write_mark_file_freq: r.int("write_mark_file_freq", 500u32, 1, u32::MAX)?,
        store_paths,
        store_paths_readonly,
        subdir_count_per_path: r.int("subdir_count_per_path", 256u32, 1, 256)?,
        tracker_servers,
        file_distribute_path_mode: r.int("file_distribute_path_mode", 0u8, 0, 1)?,
        file_distribute_rotate_count: r.int("file_distribute_rotate_count", 100u32, 1, u32::MAX)?,
        fsync_after_written_bytes: r.bytes("fsync_after_written_bytes", 0)?,
        sync_binlog_buff_interval: r.period("sync_binlog_buff_interval", 60)?,
        sync_stat_file_interval: r.period("sync_stat_file_interval", 60)?,
        upload_priority: r.int(
            "upload_priority",
            10i64,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )?,
        disk_recovery_threads: r.int("disk_recovery_threads", 1u32, 1, 256)?,
        write_quorum: r.int("write_quorum", 1u32, 1, 32)?,
        write_quorum_timeout: r.period("write_quorum_timeout", 10)?,
        if_alias_prefix: r.string("if_alias_prefix", ""),
        file_sync_skip_invalid_record: r.bool("file_sync_skip_invalid_record", false),
        use_connection_pool: r.bool("use_connection_pool", false),
        connection_pool_max_idle_time: r.secs("connection_pool_max_idle_time", 3600)?,
        compress_binlog: r.bool("compress_binlog", false),
        check_store_path_mark: r.bool("check_store_path_mark", true),
        durable: r.bool("durable", true),
        durable_sync: r.parse(
            "durable_sync",
            DurableSync::Journal,
            value::parse_durable_sync,
        )?,
        journal_file_size: journal_file_size(&mut r)?,
        // Obsolete upstream; ours: the built-in HTTP is off unless asked for.
        http_server_port: r.int("http.server_port", 0u16, 0, u16::MAX)?,
        http_domain_name: r.string("http.domain_name", ""),
        access_log: access_log(&mut r)?,
        daemon,
    };
    r.finish();
    Ok(conf)
}

fn check_trackers(
    r: &mut Reader<'_, '_>,
    list: &[HostPort],
    required: bool,
) -> Result<(), ConfError> {
    if required && list.is_empty() {
        return Err(r.missing("tracker_server"));
    }
    if list.len() > MAX_TRACKERS {
        let e = r.all("tracker_server")[MAX_TRACKERS.min(list.len() - 1)];
        return Err(Reader::invalid(
            e,
            format!("more than {MAX_TRACKERS} tracker servers"),
        ));
    }
    Ok(())
}

fn build_client(ini: &IniFile, w: &mut Vec<Warning>) -> Result<ClientConf, ConfError> {
    check_sections(ini, &[], w);
    let mut r = Reader::new(ini, None, w);
    r.accept(&["connect_first_by"]);
    // Old client.conf files `#include http.conf`.
    r.accept_prefix("http.");
    let base_path = PathBuf::from(&r.required("base_path")?.value);
    let tracker_servers = r.host_ports("tracker_server", TRACKER_DEFAULT_PORT)?;
    check_trackers(&mut r, &tracker_servers, true)?;
    let conf = ClientConf {
        connect_timeout: r.period("connect_timeout", 10)?,
        network_timeout: r.period("network_timeout", 60)?,
        base_path,
        tracker_servers,
        log_level: r.log_level()?,
        use_connection_pool: r.bool("use_connection_pool", false),
        connection_pool_max_idle_time: r.secs("connection_pool_max_idle_time", 3600)?,
        load_fdfs_parameters_from_tracker: r.bool("load_fdfs_parameters_from_tracker", false),
        use_storage_id: r.bool("use_storage_id", false),
        storage_ids_filename: r.rel_path("storage_ids_filename", "storage_ids.conf"),
        http_tracker_server_port: r.int("http.tracker_server_port", 80u16, 1, u16::MAX)?,
        http_anti_steal_secret_key: r.string("http.anti_steal.secret_key", ""),
    };
    r.finish();
    Ok(conf)
}

impl Default for HttpConf {
    /// The values used when no http.* key is given.
    fn default() -> Self {
        HttpConf {
            disabled: false,
            default_content_type: "application/octet-stream".into(),
            mime_types_filename: None,
            need_find_content_type: true,
            anti_steal_check_token: false,
            anti_steal_token_ttl: Duration::from_secs(600),
            anti_steal_secret_key: String::new(),
            anti_steal_token_check_fail: None,
            multi_range_enabled: true,
            server_port: 80,
        }
    }
}

/// The http.* keys of the reader's section.
fn http(r: &mut Reader<'_, '_>) -> Result<HttpConf, ConfError> {
    let d = HttpConf::default();
    let opt_path = |r: &mut Reader<'_, '_>, key: &str| {
        r.entry(key)
            .filter(|e| !e.value.is_empty())
            .map(|e| resolve(&e.file, &e.value))
    };
    let conf = HttpConf {
        disabled: r.bool("http.disabled", d.disabled),
        default_content_type: r.string("http.default_content_type", &d.default_content_type),
        mime_types_filename: opt_path(r, "http.mime_types_filename"),
        need_find_content_type: r.bool("http.need_find_content_type", d.need_find_content_type),
        anti_steal_check_token: r.bool("http.anti_steal.check_token", false),
        anti_steal_token_ttl: r.period("http.anti_steal.token_ttl", 600)?,
        anti_steal_secret_key: r.string("http.anti_steal.secret_key", ""),
        anti_steal_token_check_fail: opt_path(r, "http.anti_steal.token_check_fail"),
        multi_range_enabled: r.bool("http.multi_range.enabled", true),
        server_port: r.int("http.server_port", 80u16, 1, u16::MAX)?,
    };
    if conf.anti_steal_check_token && conf.anti_steal_secret_key.is_empty() {
        return Err(r.missing("http.anti_steal.secret_key"));
    }
    Ok(conf)
}

fn build_http(ini: &IniFile, w: &mut Vec<Warning>) -> Result<HttpConf, ConfError> {
    check_sections(ini, &[], w);
    let mut r = Reader::new(ini, None, w);
    let conf = http(&mut r)?;
    r.finish();
    Ok(conf)
}

/// One group of mod_fastdfs.conf, from the global section or `[groupN]`.
/// `port`: the global storage_server_port (already read), or None to read
/// the section's own, defaulting to `global_port`.
fn mod_group(
    r: &mut Reader<'_, '_>,
    base_path: &Path,
    port: Option<u16>,
    global_port: u16,
) -> Result<ModGroup, ConfError> {
    let group_name = group_name(r, "group_name", true)?;
    let storage_server_port = match port {
        Some(p) => p,
        None => r.int("storage_server_port", global_port, 1, u16::MAX)?,
    };
    let count = r.int("store_path_count", 1u32, 1, 256)?;
    let (store_paths, _readonly) = store_paths(r, count, base_path)?;
    Ok(ModGroup {
        group_name,
        storage_server_port,
        store_paths,
    })
}

fn build_mod_fastdfs(ini: &IniFile, w: &mut Vec<Warning>) -> Result<ModFastdfsConf, ConfError> {
    let mut r = Reader::new(ini, None, w);
    r.accept(&["log_filename"]);
    let base_path = PathBuf::from(&r.required("base_path")?.value);
    let load_from_tracker = r.bool("load_fdfs_parameters_from_tracker", false);
    let tracker_servers = r.host_ports("tracker_server", TRACKER_DEFAULT_PORT)?;
    check_trackers(&mut r, &tracker_servers, load_from_tracker)?;
    let url_have_group_name = r.bool("url_have_group_name", false);
    let response_mode = r.parse("response_mode", ResponseMode::Proxy, |s| {
        match s.to_ascii_lowercase().as_str() {
            "proxy" => Ok(ResponseMode::Proxy),
            "redirect" => Ok(ResponseMode::Redirect),
            _ => Err(format!("{s:?} must be proxy or redirect")),
        }
    })?;
    let group_count = r.int("group_count", 0u32, 0, 256)?;
    let global_port = r.int("storage_server_port", STORAGE_DEFAULT_PORT, 1, u16::MAX)?;
    let mut groups = Vec::new();
    if group_count == 0 {
        groups.push(mod_group(
            &mut r,
            &base_path,
            Some(global_port),
            global_port,
        )?);
    } else {
        if !url_have_group_name {
            return Err(ConfError::Syntax {
                file: ini.path().to_path_buf(),
                line: r.ini().get(None, "group_count").map(|e| e.line),
                message: "url_have_group_name must be true when group_count > 0".into(),
            });
        }
        // The global group keys are then unused but legitimate.
        r.accept(&["group_name", "store_path_count"]);
        r.accept_prefix("store_path");
        for i in 1..=group_count {
            let name = format!("group{i}");
            if ini.section(&name).is_none() {
                return Err(ConfError::Missing {
                    file: ini.path().to_path_buf(),
                    section: None,
                    key: format!("[{name}] section (group_count = {group_count})"),
                });
            }
            let mut sr = Reader::new(ini, Some(name.as_str()), &mut *r.warnings);
            let g = mod_group(&mut sr, &base_path, None, global_port)?;
            sr.finish();
            groups.push(g);
        }
    }
    let known: Vec<String> = (1..=group_count).map(|i| format!("group{i}")).collect();
    let unknown: Vec<_> = ini
        .sections()
        .iter()
        .filter(|s| !known.contains(&s.name))
        .map(|s| (s.name.clone(), s.entries.first().map(|e| e.line)))
        .collect();
    for (name, line) in unknown {
        r.warnings.push(Warning::new(
            ini.path(),
            line,
            format!("unknown section [{name}] ignored"),
        ));
    }
    let conf = ModFastdfsConf {
        connect_timeout: r.period("connect_timeout", 10)?,
        network_timeout: r.period("network_timeout", 30)?,
        log_level: r.log_level()?,
        load_fdfs_parameters_from_tracker: load_from_tracker,
        tracker_servers,
        storage_sync_file_max_delay: r.secs("storage_sync_file_max_delay", 86400)?,
        use_storage_id: r.bool("use_storage_id", false),
        storage_ids_filename: r.rel_path("storage_ids_filename", "storage_ids.conf"),
        url_have_group_name,
        response_mode,
        if_alias_prefix: r.string("if_alias_prefix", ""),
        flv_support: r.bool("flv_support", false),
        flv_extension: r.string("flv_extension", "flv"),
        groups,
        group_count,
        http: http(&mut r)?,
        base_path,
    };
    r.finish();
    Ok(conf)
}

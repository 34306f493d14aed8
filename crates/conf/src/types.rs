//! The typed configuration of each FastDFS file, with CONFIG.md's defaults.
//!
//! Field names follow the .conf keys. Durations are `std::time::Duration`,
//! sizes are bytes (`u64`), times of day are [`TimeOfDay`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `reserved_storage_space`: an absolute size or a ratio of each path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReservedSpace {
    Bytes(u64),
    /// 0 < ratio < 1 (the .conf says `20%` or `20.5%`).
    Ratio(f64),
}

impl Default for ReservedSpace {
    fn default() -> Self {
        ReservedSpace::Bytes(1024 * 1024 * 1024)
    }
}

/// `HH:MM`, 24 hour clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

/// A `host:port` entry such as `tracker_server`. `host` may be a name, an
/// IPv4 address, or a bracketed IPv6 address (brackets removed here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Resolves to a socket address (numeric hosts need no lookup).
    pub fn to_socket_addr(&self) -> std::io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {}", self.host)))
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `durable_sync` (ours, storage.conf): how durable mode makes an upload
/// durable before acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurableSync {
    /// `fsync`: the file is fsynced before it is named, then the binlog
    /// and the file's directory (group commits shared by concurrent
    /// uploads). Touches nothing but the upload's own files.
    Fsync,
    /// `syncfs`: the file is named unsynced, and one `syncfs(2)` of its
    /// store path's file system (and of the base path's, for the binlog)
    /// covers every upload that finished meanwhile. Far fewer disk flushes
    /// per upload, but each syncfs also writes back whatever else is dirty
    /// on that file system: for store paths on disks of their own.
    Syncfs,
    /// `journal` (default): every binlog record, with the whole content of
    /// a new normal or slave file up to 64 KiB, is appended to a
    /// write-ahead journal in the base path; one `fdatasync` of it covers
    /// every upload that finished meanwhile. The files reach the disk later; a restart
    /// after a crash redoes what the journal holds. Other changes are
    /// synced as with `fsync`. The default: as durable as `fsync`, twice
    /// its 4 KiB upload rate on our VM (docs/benchmarks.md).
    #[default]
    Journal,
}

/// `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    #[default]
    Info,
    Debug,
}

/// Ours: `stat_layout` in tracker.conf, the record layouts of the
/// list-groups (90/91) and list-storages (92) replies. Nothing on the wire
/// tells a client which one it gets, so the operator picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatLayout {
    /// `6.16` (the default): V6.13.1+ records, 113-byte groups and
    /// 487-byte storages.
    #[default]
    V6_16,
    /// `6.10`: the V5.x–V6.10 records old clients parse (fastdfs-client-java
    /// ≤ 1.30, fdfs_client-py and its forks), 105-byte groups and 612-byte
    /// storages.
    V6_10,
}

/// Keys shared by tracker.conf and storage.conf (CONFIG.md §2).
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConf {
    pub disabled: bool,
    /// Empty: all addresses.
    pub bind_addr: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub base_path: PathBuf,
    pub max_connections: u32,
    pub work_threads: u32,
    /// Largest request body accepted (other than streamed content).
    pub buff_size: u64,
    pub log_level: LogLevel,
    pub log_rotation: LogRotation,
    pub allow_hosts: crate::AllowHosts,
    pub run_by_group: String,
    pub run_by_user: String,
    /// Ours: port of the `/metrics` (Prometheus) and `/status` (JSON)
    /// endpoint on `bind_addr`; 0 (the default) = none.
    pub metrics_port: u16,
}

/// When a daemon's log file is rotated (CONFIG.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// `log_file_rotate_everyday`, at `log_file_rotate_time` (local).
    pub everyday: bool,
    pub time: TimeOfDay,
    /// `log_file_rotate_on_size`: bytes, 0 = never.
    pub on_size: u64,
    /// `log_file_keep_days`: rotated files older than this are deleted
    /// (0 = kept).
    pub keep_days: u32,
    /// `log_file_compress_old`: gzip rotated files.
    pub compress_old: bool,
    /// `log_file_compress_days_before`: compress a rotated file once it is
    /// this many days old (1 = last written before today; 0 = at once).
    pub compress_days_before: u32,
    /// `log_file_delete_old_time` (local): the daily pass that deletes
    /// (and compresses) rotated files.
    pub delete_old_time: TimeOfDay,
}

impl Default for LogRotation {
    /// FastDFS's defaults: daily at midnight, kept 15 days, not
    /// compressed, old files deleted at 01:30.
    fn default() -> Self {
        LogRotation {
            everyday: true,
            time: TimeOfDay { hour: 0, minute: 0 },
            on_size: 0,
            keep_days: 15,
            compress_old: false,
            compress_days_before: 1,
            delete_old_time: TimeOfDay {
                hour: 1,
                minute: 30,
            },
        }
    }
}

/// storage.conf's `[access-log]` (`storage_access.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogConf {
    pub rotation: LogRotation,
    /// `time_precision = us`: times in microseconds (else milliseconds).
    pub micros: bool,
}

/// tracker.conf (CONFIG.md §3), plus our own keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConf {
    pub daemon: DaemonConf,
    /// `response_ip_addr_size`: false = auto (16 unless IPv6 ids), true = 46.
    pub response_ip_addr_ipv6: bool,
    /// 0 round robin, 1 fixed group, 2 load balance.
    pub store_lookup: u8,
    pub store_group: String,
    /// 0 round robin, 1 first by id, 2 by upload_priority.
    pub store_server: u8,
    /// 0 round robin, 2 load balance.
    pub store_path: u8,
    /// 0 round robin, 1 source first.
    pub download_server: u8,
    pub reserved_storage_space: ReservedSpace,
    pub check_active_interval: Duration,
    pub storage_ip_changed_auto_adjust: bool,
    pub storage_sync_file_max_delay: Duration,
    pub storage_sync_file_max_time: Duration,
    pub use_trunk_file: bool,
    pub slot_min_size: u64,
    pub slot_max_size: u64,
    pub trunk_file_size: u64,
    /// Slots are multiples of this (0: no alignment).
    pub trunk_alloc_alignment_size: u64,
    /// `trunk_create_file_advance`: the trunk server makes trunk files
    /// ahead of demand, at `trunk_create_file_time_base` (local) and every
    /// `trunk_create_file_interval` after it, until the group's free trunk
    /// space reaches `trunk_create_file_space_threshold` bytes.
    pub trunk_create_file_advance: bool,
    pub trunk_create_file_time_base: TimeOfDay,
    pub trunk_create_file_interval: Duration,
    pub trunk_create_file_space_threshold: u64,
    /// `trunk_binlog_max_backups`: copies of the trunk binlog kept from
    /// before its compactions (0: none).
    pub trunk_binlog_max_backups: u32,
    pub use_storage_id: bool,
    pub storage_ids_filename: PathBuf,
    /// `id_type_in_filename`: true = id, false = ip.
    pub id_type_in_filename_is_id: bool,
    pub trust_storage_server_id: bool,
    pub store_slave_file_use_link: bool,
    pub use_connection_pool: bool,
    pub connection_pool_max_idle_time: Duration,
    /// Ours: `stat_layout = 6.16` (default) or `6.10`, see [`StatLayout`].
    pub stat_layout: StatLayout,
}

/// storage.conf (CONFIG.md §4), plus our own keys.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConf {
    pub daemon: DaemonConf,
    pub group_name: String,
    pub client_bind: bool,
    pub server_id: String,
    pub heart_beat_interval: Duration,
    pub stat_report_interval: Duration,
    pub sync_wait_msec: Duration,
    pub sync_interval: Duration,
    pub sync_start_time: TimeOfDay,
    pub sync_end_time: TimeOfDay,
    pub write_mark_file_freq: u32,
    /// `[access-log] enabled` (or `use_access_log`): one line per client
    /// request in `logs/storage_access.log`.
    pub access_log: Option<AccessLogConf>,
    /// store_path0..N; store_path0 defaults to base_path.
    pub store_paths: Vec<PathBuf>,
    /// `store_pathN_readonly`, one flag per path.
    pub store_paths_readonly: Vec<bool>,
    pub subdir_count_per_path: u32,
    pub tracker_servers: Vec<HostPort>,
    /// 0 round robin, 1 hash.
    pub file_distribute_path_mode: u8,
    pub file_distribute_rotate_count: u32,
    pub fsync_after_written_bytes: u64,
    pub sync_binlog_buff_interval: Duration,
    pub sync_stat_file_interval: Duration,
    pub upload_priority: i64,
    /// Files fetched at once when a replaced store path is refilled.
    pub disk_recovery_threads: u32,
    /// Ours: servers of the group, this one included, that must hold a new
    /// file before its upload is acknowledged (1 = FastDFS's behaviour).
    pub write_quorum: u32,
    /// Ours: how long an upload waits for `write_quorum`.
    pub write_quorum_timeout: Duration,
    pub if_alias_prefix: String,
    pub file_sync_skip_invalid_record: bool,
    pub use_connection_pool: bool,
    pub connection_pool_max_idle_time: Duration,
    pub compress_binlog: bool,
    pub check_store_path_mark: bool,
    /// Ours: `durable = true` (default) fsyncs the file, its directory entry
    /// and the binlog record before acknowledging; false acknowledges after
    /// the rename, as FastDFS does.
    pub durable: bool,
    /// Ours: how `durable = true` makes an upload durable.
    pub durable_sync: DurableSync,
    /// Ours: bytes of each of the two files of `durable_sync = journal`.
    pub journal_file_size: u64,
    /// Legacy `http.server_port` (obsolete upstream): where our built-in
    /// storage HTTP listens; 0 = off.
    pub http_server_port: u16,
    /// Legacy `http.domain_name`.
    pub http_domain_name: String,
}

/// client.conf (CONFIG.md §5).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConf {
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub base_path: PathBuf,
    pub tracker_servers: Vec<HostPort>,
    pub log_level: LogLevel,
    pub use_connection_pool: bool,
    pub connection_pool_max_idle_time: Duration,
    pub load_fdfs_parameters_from_tracker: bool,
    pub use_storage_id: bool,
    pub storage_ids_filename: PathBuf,
    pub http_tracker_server_port: u16,
    pub http_anti_steal_secret_key: String,
}

/// http.conf (CONFIG.md §7).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConf {
    pub disabled: bool,
    pub default_content_type: String,
    /// Resolved against the including file's directory; None = built-in table.
    pub mime_types_filename: Option<PathBuf>,
    pub need_find_content_type: bool,
    pub anti_steal_check_token: bool,
    pub anti_steal_token_ttl: Duration,
    pub anti_steal_secret_key: String,
    pub anti_steal_token_check_fail: Option<PathBuf>,
    pub multi_range_enabled: bool,
    pub server_port: u16,
}

/// One `[groupN]` section of mod_fastdfs.conf, or the global group.
#[derive(Debug, Clone, PartialEq)]
pub struct ModGroup {
    pub group_name: String,
    pub storage_server_port: u16,
    pub store_paths: Vec<PathBuf>,
}

/// `response_mode` of mod_fastdfs.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    #[default]
    Proxy,
    Redirect,
}

/// mod_fastdfs.conf (CONFIG.md §8), with the http.conf it includes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModFastdfsConf {
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub base_path: PathBuf,
    pub log_level: LogLevel,
    pub load_fdfs_parameters_from_tracker: bool,
    pub tracker_servers: Vec<HostPort>,
    pub storage_sync_file_max_delay: Duration,
    pub use_storage_id: bool,
    pub storage_ids_filename: PathBuf,
    pub url_have_group_name: bool,
    pub response_mode: ResponseMode,
    pub if_alias_prefix: String,
    pub flv_support: bool,
    pub flv_extension: String,
    /// The groups this host serves: the global one when group_count = 0,
    /// else one per `[groupN]` section.
    pub groups: Vec<ModGroup>,
    pub group_count: u32,
    pub http: HttpConf,
}

/// `rw=` of storage_ids.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RwMode {
    #[default]
    Both,
    Read,
    Write,
    None,
}

/// One line of storage_ids.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageIdEntry {
    pub id: String,
    pub group_name: String,
    /// One or two addresses (inner, outer), as written: IPs or host names.
    pub hosts: Vec<String>,
    /// The IPs of `hosts`: the literal ones, plus the names' once
    /// [`StorageIds::resolve_names`] ran.
    pub addrs: Vec<std::net::IpAddr>,
    pub port: Option<u16>,
    pub rw: RwMode,
}

/// storage_ids.conf (CONFIG.md §6).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StorageIds {
    pub entries: Vec<StorageIdEntry>,
}

//! The part of tracker.conf the engine uses, with CONFIG.md §3 defaults.
//!
//! Kept separate from `fdfs_conf::TrackerConf` so the engine can be built in
//! unit tests without a config file, and so keys the config crate does not
//! carry yet (trunk tuning echoed by PARAMETER_REQ) have one home.

use std::sync::Arc;
use std::time::Duration;

use fdfs_conf::{ReservedSpace, StatLayout, StorageIds, TimeOfDay, TrackerConf};
use fdfs_proto::IpSize;

/// Engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// 0 round robin, 1 fixed group, 2 load balance.
    pub store_lookup: u8,
    pub store_group: String,
    /// 0 round robin, 1 first by id, 2 lowest upload_priority.
    pub store_server: u8,
    /// 0 round robin, 2 load balance.
    pub store_path: u8,
    /// 0 round robin, 1 source first.
    pub download_server: u8,
    pub reserved: ReservedSpace,
    pub check_active_interval: Duration,
    pub storage_sync_file_max_delay: Duration,
    pub storage_sync_file_max_time: Duration,
    pub storage_ip_changed_auto_adjust: bool,
    pub use_storage_id: bool,
    pub id_type_in_filename_is_id: bool,
    pub trust_storage_server_id: bool,
    /// storage_ids.conf, read when `use_storage_id` (empty otherwise).
    pub storage_ids: Arc<StorageIds>,
    pub ip_size: IpSize,
    pub use_trunk_file: bool,
    pub slot_min_size: u64,
    pub slot_max_size: u64,
    pub trunk_alloc_alignment_size: u64,
    pub trunk_file_size: u64,
    pub trunk_create_file_advance: bool,
    pub trunk_create_file_time_base: TimeOfDay,
    pub trunk_create_file_interval: u64,
    pub trunk_create_file_space_threshold: u64,
    pub trunk_init_check_occupying: bool,
    pub trunk_init_reload_from_binlog: bool,
    pub trunk_free_space_merge: bool,
    pub delete_unused_trunk_files: bool,
    pub trunk_compress_binlog_min_interval: u64,
    pub trunk_compress_binlog_interval: u64,
    pub trunk_compress_binlog_time_base: TimeOfDay,
    pub trunk_binlog_max_backups: u32,
    pub store_slave_file_use_link: bool,
    /// Ours: the record layouts of the 90/91/92 replies.
    pub stat_layout: StatLayout,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            store_lookup: 0,
            store_group: String::new(),
            store_server: 0,
            store_path: 0,
            download_server: 0,
            reserved: ReservedSpace::default(),
            check_active_interval: Duration::from_secs(100),
            storage_sync_file_max_delay: Duration::from_secs(86400),
            storage_sync_file_max_time: Duration::from_secs(300),
            storage_ip_changed_auto_adjust: true,
            use_storage_id: false,
            id_type_in_filename_is_id: false,
            trust_storage_server_id: true,
            storage_ids: Arc::default(),
            ip_size: IpSize::V4,
            use_trunk_file: false,
            slot_min_size: 256,
            slot_max_size: 64 * 1024 * 1024 / 8,
            trunk_alloc_alignment_size: 0,
            trunk_file_size: 64 * 1024 * 1024,
            trunk_create_file_advance: false,
            trunk_create_file_time_base: TimeOfDay { hour: 2, minute: 0 },
            trunk_create_file_interval: 86400,
            trunk_create_file_space_threshold: 0,
            trunk_init_check_occupying: false,
            trunk_init_reload_from_binlog: false,
            trunk_free_space_merge: false,
            delete_unused_trunk_files: false,
            trunk_compress_binlog_min_interval: 0,
            trunk_compress_binlog_interval: 0,
            trunk_compress_binlog_time_base: TimeOfDay { hour: 3, minute: 0 },
            trunk_binlog_max_backups: 0,
            store_slave_file_use_link: false,
            stat_layout: StatLayout::V6_16,
        }
    }
}

impl Settings {
    /// Takes every key tracker.conf carries; the rest keep their defaults.
    pub fn from_conf(c: &TrackerConf) -> Settings {
        let mut s = Settings {
            store_lookup: c.store_lookup,
            store_group: c.store_group.clone(),
            store_server: c.store_server,
            store_path: c.store_path,
            download_server: c.download_server,
            reserved: c.reserved_storage_space,
            check_active_interval: c.check_active_interval,
            storage_sync_file_max_delay: c.storage_sync_file_max_delay,
            storage_sync_file_max_time: c.storage_sync_file_max_time,
            storage_ip_changed_auto_adjust: c.storage_ip_changed_auto_adjust,
            use_storage_id: c.use_storage_id,
            id_type_in_filename_is_id: c.id_type_in_filename_is_id,
            trust_storage_server_id: c.trust_storage_server_id,
            ip_size: if c.response_ip_addr_ipv6 {
                IpSize::V6
            } else {
                IpSize::V4
            },
            use_trunk_file: c.use_trunk_file,
            slot_min_size: c.slot_min_size,
            slot_max_size: c.slot_max_size,
            trunk_file_size: c.trunk_file_size,
            trunk_alloc_alignment_size: c.trunk_alloc_alignment_size,
            trunk_create_file_advance: c.trunk_create_file_advance,
            trunk_create_file_time_base: c.trunk_create_file_time_base,
            trunk_create_file_interval: c.trunk_create_file_interval.as_secs(),
            trunk_create_file_space_threshold: c.trunk_create_file_space_threshold,
            trunk_binlog_max_backups: c.trunk_binlog_max_backups,
            store_slave_file_use_link: c.store_slave_file_use_link,
            stat_layout: c.stat_layout,
            ..Settings::default()
        };
        // CONFIG.md §3: with trunk files the round-robin server choice is
        // forced to "first server".
        if s.use_trunk_file && s.store_server == 0 {
            s.store_server = 1;
        }
        s
    }

    /// Adopts storage_ids.conf. With `response_ip_addr_size = auto`, an
    /// IPv6 address in it makes every response IP field 46 bytes (§1).
    pub fn with_storage_ids(mut self, ids: StorageIds) -> Settings {
        if ids.has_ipv6() {
            self.ip_size = IpSize::V6;
        }
        self.storage_ids = Arc::new(ids);
        self
    }

    /// `reserved_storage_space` as text, the way PARAMETER_REQ sends it
    /// (`20.00%` or `1024MB`).
    pub fn reserved_text(&self) -> String {
        match self.reserved {
            ReservedSpace::Ratio(r) => format!("{:.2}%", r * 100.0),
            ReservedSpace::Bytes(b) => format!("{}MB", b / MB),
        }
    }

    /// The 26 `key=value` pairs of the PARAMETER_REQ (75) reply, in
    /// upstream's order (golden storage_join_and_heartbeat).
    pub fn parameters(&self) -> Vec<(String, String)> {
        let b = |v: bool| if v { "1" } else { "0" }.to_owned();
        let tod = |t: TimeOfDay| format!("{:02}:{:02}", t.hour, t.minute);
        let kv = [
            ("use_storage_id", b(self.use_storage_id)),
            (
                "id_type_in_filename",
                if self.id_type_in_filename_is_id {
                    "id"
                } else {
                    "ip"
                }
                .to_owned(),
            ),
            ("trust_storage_server_id", b(self.trust_storage_server_id)),
            ("response_ip_addr_size", self.ip_size.rip().to_string()),
            (
                "storage_ip_changed_auto_adjust",
                b(self.storage_ip_changed_auto_adjust),
            ),
            (
                "storage_sync_file_max_delay",
                self.storage_sync_file_max_delay.as_secs().to_string(),
            ),
            ("store_path", self.store_path.to_string()),
            ("reserved_storage_space", self.reserved_text()),
            ("use_trunk_file", b(self.use_trunk_file)),
            ("slot_min_size", self.slot_min_size.to_string()),
            ("slot_max_size", self.slot_max_size.to_string()),
            (
                "trunk_alloc_alignment_size",
                self.trunk_alloc_alignment_size.to_string(),
            ),
            ("trunk_file_size", self.trunk_file_size.to_string()),
            (
                "trunk_create_file_advance",
                b(self.trunk_create_file_advance),
            ),
            (
                "trunk_create_file_time_base",
                tod(self.trunk_create_file_time_base),
            ),
            (
                "trunk_create_file_interval",
                self.trunk_create_file_interval.to_string(),
            ),
            (
                "trunk_create_file_space_threshold",
                self.trunk_create_file_space_threshold.to_string(),
            ),
            (
                "trunk_init_check_occupying",
                b(self.trunk_init_check_occupying),
            ),
            (
                "trunk_init_reload_from_binlog",
                b(self.trunk_init_reload_from_binlog),
            ),
            ("trunk_free_space_merge", b(self.trunk_free_space_merge)),
            (
                "delete_unused_trunk_files",
                b(self.delete_unused_trunk_files),
            ),
            (
                "trunk_compress_binlog_min_interval",
                self.trunk_compress_binlog_min_interval.to_string(),
            ),
            (
                "trunk_compress_binlog_interval",
                self.trunk_compress_binlog_interval.to_string(),
            ),
            (
                "trunk_compress_binlog_time_base",
                tod(self.trunk_compress_binlog_time_base),
            ),
            (
                "trunk_binlog_max_backups",
                self.trunk_binlog_max_backups.to_string(),
            ),
            (
                "store_slave_file_use_link",
                b(self.store_slave_file_use_link),
            ),
        ];
        kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

pub(crate) const MB: u64 = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_match_the_golden_capture_for_the_same_settings() {
        let s = Settings {
            reserved: ReservedSpace::Ratio(0.20),
            slot_max_size: 1048576,
            trunk_alloc_alignment_size: 256,
            trunk_create_file_space_threshold: 20 * 1024 * 1024 * 1024,
            trunk_free_space_merge: true,
            trunk_compress_binlog_min_interval: 86400,
            trunk_compress_binlog_interval: 86400,
            trunk_binlog_max_backups: 7,
            ..Settings::default()
        };
        let text = String::from_utf8(fdfs_proto::tracker::encode_params(&s.parameters())).unwrap();
        let golden = "use_storage_id=0\nid_type_in_filename=ip\ntrust_storage_server_id=1\n\
response_ip_addr_size=16\nstorage_ip_changed_auto_adjust=1\nstorage_sync_file_max_delay=86400\n\
store_path=0\nreserved_storage_space=20.00%\nuse_trunk_file=0\nslot_min_size=256\n\
slot_max_size=1048576\ntrunk_alloc_alignment_size=256\ntrunk_file_size=67108864\n\
trunk_create_file_advance=0\ntrunk_create_file_time_base=02:00\ntrunk_create_file_interval=86400\n\
trunk_create_file_space_threshold=21474836480\ntrunk_init_check_occupying=0\n\
trunk_init_reload_from_binlog=0\ntrunk_free_space_merge=1\ndelete_unused_trunk_files=0\n\
trunk_compress_binlog_min_interval=86400\ntrunk_compress_binlog_interval=86400\n\
trunk_compress_binlog_time_base=03:00\ntrunk_binlog_max_backups=7\nstore_slave_file_use_link=0\n";
        assert_eq!(text, golden);
        assert_eq!(text.len(), 740);
    }

    #[test]
    fn the_make_ahead_keys_of_tracker_conf_reach_the_storages() {
        let conf = TrackerConf::from_str(
            "base_path=/t\nuse_trunk_file=true\ntrunk_create_file_advance=true\n\
             trunk_create_file_time_base=00:00\ntrunk_create_file_interval=2\n\
             trunk_create_file_space_threshold=12MB\n",
            std::path::Path::new("tracker.conf"),
        )
        .unwrap();
        let params = Settings::from_conf(&conf).parameters();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("trunk_create_file_advance"), "1");
        assert_eq!(get("trunk_create_file_time_base"), "00:00");
        assert_eq!(get("trunk_create_file_interval"), "2");
        assert_eq!(get("trunk_create_file_space_threshold"), "12582912");
        assert_eq!(get("trunk_binlog_max_backups"), "0");
        let conf = TrackerConf::from_str(
            "base_path=/t\ntrunk_binlog_max_backups=7\n",
            std::path::Path::new("tracker.conf"),
        )
        .unwrap();
        let params = Settings::from_conf(&conf).parameters();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("trunk_binlog_max_backups"), "7");
    }

    #[test]
    fn reserved_text_forms() {
        let mut s = Settings::default();
        assert_eq!(s.reserved_text(), "1024MB");
        s.reserved = ReservedSpace::Ratio(0.105);
        assert_eq!(s.reserved_text(), "10.50%");
    }
}

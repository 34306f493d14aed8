//! What the storage HTTP server needs to know, built from storage.conf and
//! (optionally) mod_fastdfs.conf / http.conf.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fdfs_conf::{HttpConf, ModFastdfsConf, ResponseMode, StorageConf, StorageIds};

use crate::mime::MimeTable;
use crate::HttpError;

/// Anti-steal token settings (http.conf `http.anti_steal.*`).
#[derive(Debug, Clone)]
pub struct TokenConf {
    pub secret_key: String,
    pub ttl: Duration,
    /// Served (200, by its extension's type) instead of an error on failure.
    pub check_fail_file: Option<PathBuf>,
}

/// Another storage server of this group, as the tracker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// Storage ID (numeric when `id_type_in_filename=id`), or the IP text.
    pub id: String,
    pub ip: IpAddr,
}

/// Supplies the current group members; the storage server feeds it from its
/// tracker reporter. Called on each not-yet-synced miss.
pub type PeerSource = Arc<dyn Fn() -> Vec<PeerAddr> + Send + Sync>;

/// Supplies the trackers' `storage_sync_file_max_delay`, if known yet.
pub type MaxDelaySource = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

/// Configuration of [`crate::storage::StorageHttp`].
#[derive(Clone)]
pub struct StorageHttpConfig {
    pub group_name: String,
    /// store_path0..N: `M00` is the first.
    pub store_paths: Vec<PathBuf>,
    pub subdir_count_per_path: u32,
    /// URLs carry `/<group>/` before `M00` (also accepted when false).
    pub url_have_group_name: bool,
    pub response_mode: ResponseMode,
    /// The HTTP port of the other storages of the group (where proxy and
    /// redirect go); by default the port we listen on.
    pub peer_http_port: Option<u16>,
    /// A missing file created longer ago than this should have been synced
    /// already: 404 instead of asking its source.
    pub storage_sync_file_max_delay: Duration,
    /// Where the trackers' `storage_sync_file_max_delay` comes from, when
    /// it is taken from them (no mod_fastdfs.conf, or its
    /// `load_fdfs_parameters_from_tracker = true`); until it gives one,
    /// `storage_sync_file_max_delay` above applies.
    pub max_delay_source: Option<MaxDelaySource>,
    /// mod_fastdfs.conf's `load_fdfs_parameters_from_tracker` (true
    /// without that file: the storage has them from its trackers anyway).
    pub params_from_tracker: bool,
    pub connect_timeout: Duration,
    /// Idle read/write timeout for clients and for proxied fetches.
    pub network_timeout: Duration,
    /// The head of a request must arrive within this.
    pub header_read_timeout: Duration,
    /// Our own addresses: a file whose source is one of them should be here.
    /// The address each request arrived on is always added.
    pub local_ips: Vec<IpAddr>,
    pub mime: MimeTable,
    pub need_find_content_type: bool,
    pub token: Option<TokenConf>,
    pub multi_range_enabled: bool,
    /// `flv_support` and `flv_extension` of mod_fastdfs.conf: files with
    /// this extension seek with `?start=` (PROTOCOL.md §10.4); None: off.
    pub flv_extension: Option<String>,
    /// `if_alias_prefix`: a URL path prefix (e.g. `/fastdfs`, for a proxy
    /// that forwards `/fastdfs/group1/M00/...` as is) taken off before the
    /// path is read; None: none.
    pub alias_prefix: Option<String>,
    /// Group members for the "is the source one of ours" check and for
    /// mapping numeric source IDs to addresses. None: the source IP in the
    /// file ID is trusted as is.
    pub peers: Option<PeerSource>,
    /// Threads serving connections; 0 (the default) = one per core.
    pub workers: usize,
}

impl std::fmt::Debug for StorageHttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHttpConfig")
            .field("group_name", &self.group_name)
            .field("store_paths", &self.store_paths)
            .field("url_have_group_name", &self.url_have_group_name)
            .field("response_mode", &self.response_mode)
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl StorageHttpConfig {
    /// Plain defaults for one group over `store_paths`: groups in URLs,
    /// proxy mode, no tokens, the built-in MIME table.
    pub fn new(group_name: &str, store_paths: Vec<PathBuf>) -> StorageHttpConfig {
        StorageHttpConfig {
            group_name: group_name.to_owned(),
            store_paths,
            subdir_count_per_path: 256,
            url_have_group_name: true,
            response_mode: ResponseMode::Proxy,
            peer_http_port: None,
            storage_sync_file_max_delay: Duration::from_secs(86400),
            max_delay_source: None,
            params_from_tracker: true,
            connect_timeout: Duration::from_secs(10),
            network_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            local_ips: Vec::new(),
            mime: MimeTable::builtin("application/octet-stream"),
            need_find_content_type: true,
            token: None,
            multi_range_enabled: true,
            flv_extension: None,
            alias_prefix: None,
            peers: None,
            workers: 0,
        }
    }

    /// From storage.conf and, when given, mod_fastdfs.conf (whose `http`
    /// part is http.conf). Without mod_fastdfs.conf, URLs carry the group
    /// (as in the deployment guide) and files not yet synced are proxied.
    pub fn from_confs(
        storage: &StorageConf,
        module: Option<&ModFastdfsConf>,
    ) -> Result<StorageHttpConfig, HttpError> {
        let mut c = StorageHttpConfig::new(&storage.group_name, storage.store_paths.clone());
        c.subdir_count_per_path = storage.subdir_count_per_path;
        c.connect_timeout = storage.daemon.connect_timeout;
        c.network_timeout = storage.daemon.network_timeout;
        if storage.http_server_port != 0 {
            c.peer_http_port = Some(storage.http_server_port);
        }
        c.set_alias_prefix(&storage.if_alias_prefix);
        if let Some(m) = module {
            c.url_have_group_name = m.url_have_group_name;
            c.response_mode = m.response_mode;
            c.storage_sync_file_max_delay = m.storage_sync_file_max_delay;
            c.params_from_tracker = m.load_fdfs_parameters_from_tracker;
            c.connect_timeout = m.connect_timeout;
            c.network_timeout = m.network_timeout;
            if !m.if_alias_prefix.is_empty() {
                c.set_alias_prefix(&m.if_alias_prefix);
            }
            if m.flv_support && !m.flv_extension.is_empty() {
                c.flv_extension = Some(m.flv_extension.clone());
            }
            c.apply_http_conf(&m.http)?;
            if m.use_storage_id {
                let mut ids = StorageIds::load(&m.storage_ids_filename)
                    .map_err(|e| HttpError::Config(e.to_string()))?;
                ids.resolve_names(&fdfs_conf::system_resolver, &m.storage_ids_filename);
                c.peers = Some(peers_from_ids(&ids, &storage.group_name));
            }
        }
        Ok(c)
    }

    /// `if_alias_prefix`, as `/prefix` without a trailing slash; an empty
    /// one (or `/`) is none.
    fn set_alias_prefix(&mut self, prefix: &str) {
        let p = prefix.trim().trim_matches('/');
        self.alias_prefix = (!p.is_empty()).then(|| format!("/{p}"));
    }

    /// Applies http.conf: MIME table, tokens, multi-range.
    pub fn apply_http_conf(&mut self, h: &HttpConf) -> Result<(), HttpError> {
        let default_type = if h.default_content_type.is_empty() {
            "application/octet-stream"
        } else {
            h.default_content_type.as_str()
        };
        self.mime = match &h.mime_types_filename {
            Some(p) => MimeTable::load(p, default_type).map_err(|e| HttpError::Io {
                path: p.clone(),
                source: e,
            })?,
            None => MimeTable::builtin(default_type),
        };
        self.need_find_content_type = h.need_find_content_type;
        self.multi_range_enabled = h.multi_range_enabled;
        self.token = if h.anti_steal_check_token {
            if h.anti_steal_secret_key.is_empty() {
                return Err(HttpError::Config(
                    "http.anti_steal.check_token is on but http.anti_steal.secret_key is empty"
                        .into(),
                ));
            }
            Some(TokenConf {
                secret_key: h.anti_steal_secret_key.clone(),
                ttl: h.anti_steal_token_ttl,
                check_fail_file: h.anti_steal_token_check_fail.clone(),
            })
        } else {
            None
        };
        Ok(())
    }
}

/// The fixed membership storage_ids.conf gives for `group` (the first
/// address of each entry; host names are skipped).
pub fn peers_from_ids(ids: &StorageIds, group: &str) -> PeerSource {
    let list: Vec<PeerAddr> = ids
        .entries
        .iter()
        .filter(|e| e.group_name == group)
        .filter_map(|e| {
            let ip = *e.addrs.first()?;
            Some(PeerAddr {
                id: e.id.clone(),
                ip,
            })
        })
        .collect();
    Arc::new(move || list.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn from_storage_and_module_confs() {
        let d = tempfile::tempdir().unwrap();
        let storage = StorageConf::from_str(
            &format!(
                "group_name = group2\nbase_path = {0}\nstore_path_count = 2\n\
                 store_path0 = {0}/a\nstore_path1 = {0}/b\nsubdir_count_per_path = 16\n\
                 tracker_server = 127.0.0.1:22122\nhttp.server_port = 8888\n",
                d.path().display()
            ),
            &d.path().join("storage.conf"),
        )
        .unwrap();
        let c = StorageHttpConfig::from_confs(&storage, None).unwrap();
        assert_eq!(c.group_name, "group2");
        assert_eq!(c.store_paths.len(), 2);
        assert_eq!(c.subdir_count_per_path, 16);
        assert_eq!(c.peer_http_port, Some(8888));
        assert!(c.url_have_group_name, "URLs carry the group by default");
        assert!(c.token.is_none());

        std::fs::write(d.path().join("mime.types"), "image/x-test  tst\n").unwrap();
        std::fs::write(
            d.path().join("http.conf"),
            "http.default_content_type = application/x-default\n\
             http.mime_types_filename = mime.types\n\
             http.anti_steal.check_token = true\n\
             http.anti_steal.token_ttl = 900\n\
             http.anti_steal.secret_key = s3cret\n\
             http.multi_range.enabled = false\n",
        )
        .unwrap();
        let module = ModFastdfsConf::from_str(
            &format!(
                "base_path = {0}\ngroup_name = group2\nurl_have_group_name = false\n\
                 response_mode = redirect\nstorage_sync_file_max_delay = 120\n\
                 flv_support = true\nflv_extension = f4v\nif_alias_prefix = fastdfs/\n\
                 store_path0 = {0}/a\n#include http.conf\n",
                d.path().display()
            ),
            &d.path().join("mod_fastdfs.conf"),
        )
        .unwrap();
        let c = StorageHttpConfig::from_confs(&storage, Some(&module)).unwrap();
        assert!(!c.url_have_group_name);
        assert_eq!(c.response_mode, ResponseMode::Redirect);
        assert_eq!(c.storage_sync_file_max_delay, Duration::from_secs(120));
        assert_eq!(c.flv_extension.as_deref(), Some("f4v"));
        assert_eq!(c.alias_prefix.as_deref(), Some("/fastdfs"));
        assert_eq!(c.mime.lookup("tst"), "image/x-test");
        assert_eq!(c.mime.lookup("jpg"), "application/x-default");
        assert!(!c.multi_range_enabled);
        let t = c.token.unwrap();
        assert_eq!(t.secret_key, "s3cret");
        assert_eq!(t.ttl, Duration::from_secs(900));

        assert!(c.peers.is_none(), "no storage ids: trust the file ID");

        std::fs::write(
            d.path().join("storage_ids.conf"),
            "100001 group2 192.168.0.1\n100002 group2 192.168.0.2,10.0.0.2\n100003 group1 192.168.0.3\n",
        )
        .unwrap();
        let module_ids = ModFastdfsConf::from_str(
            &format!(
                "base_path = {0}\ngroup_name = group2\nuse_storage_id = true\n\
                 storage_ids_filename = storage_ids.conf\nstore_path0 = {0}/a\n",
                d.path().display()
            ),
            &d.path().join("mod_fastdfs.conf"),
        )
        .unwrap();
        let c = StorageHttpConfig::from_confs(&storage, Some(&module_ids)).unwrap();
        let peers = (c.peers.unwrap())();
        assert_eq!(
            peers,
            vec![
                PeerAddr {
                    id: "100001".into(),
                    ip: "192.168.0.1".parse().unwrap()
                },
                PeerAddr {
                    id: "100002".into(),
                    ip: "192.168.0.2".parse().unwrap()
                },
            ]
        );

        let mut h = module.http.clone();
        h.mime_types_filename = Some(Path::new("/nonexistent/mime.types").to_path_buf());
        let mut c2 = StorageHttpConfig::new("g", vec![]);
        assert!(
            c2.apply_http_conf(&h).is_err(),
            "a missing mime.types is an error"
        );
    }
}

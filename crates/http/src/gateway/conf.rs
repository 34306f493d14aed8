//! gateway.conf: the same `key = value` dialect as the FastDFS files
//! (parsed with `fdfs_conf::IniFile`). Documented in docs/gateway.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_conf::{value, AllowHosts, HostPort, IniFile};

use crate::HttpError;

/// The gateway's configuration, with defaults matching the deployment
/// guide's tracker-side nginx.
#[derive(Debug, Clone)]
pub struct GatewayConf {
    /// `bind_addr` + `port` (default 0.0.0.0:8000).
    pub listen: SocketAddr,
    /// `tracker_server`, repeated.
    pub tracker_servers: Vec<HostPort>,
    /// `storage_http_port`: where every storage serves HTTP (8888).
    pub storage_http_port: u16,
    /// `refresh_interval`: how often group members are re-read (30s).
    pub refresh_interval: Duration,
    /// `max_fails` within `fail_timeout` mark a server down for
    /// `fail_timeout` (2, 30s).
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// `connect_timeout` (5s) and `network_timeout` (30s): to storages and
    /// trackers; also the client idle timeout.
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    /// `cache_path`: empty = no cache.
    pub cache_path: Option<PathBuf>,
    /// `cache_max_size` (1g), `cache_inactive` (30d), `cache_valid` (12h).
    pub cache_max_size: u64,
    pub cache_inactive: Duration,
    pub cache_valid: Duration,
    /// `cache_sweep_interval`: how often the eviction worker runs (60s).
    pub cache_sweep_interval: Duration,
    /// `expires`: Cache-Control max-age sent to clients (30d; 0 = none).
    pub expires: Duration,
    /// `purge_allow`, repeated: addresses, CIDRs, ranges (default 127.0.0.1).
    pub purge_allow: AllowHosts,
    /// `workers`: threads serving client connections (0 = one per core).
    pub workers: usize,
    /// `access_log`: a file for one line per request (nginx's combined
    /// format); empty = none.
    pub access_log: Option<PathBuf>,
    /// `access_log_keep_days`: rotated access logs older than this are
    /// deleted (15; 0 = kept).
    pub access_log_keep_days: u32,
}

/// Upper bound of `workers` (threads serving connections).
const MAX_WORKERS: u64 = 256;

impl GatewayConf {
    /// The defaults (as documented in docs/gateway.md) for these trackers:
    /// listen on 0.0.0.0:8000, no cache, purge from 127.0.0.1 only.
    pub fn new(tracker_servers: Vec<HostPort>) -> GatewayConf {
        GatewayConf {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            tracker_servers,
            storage_http_port: 8888,
            refresh_interval: Duration::from_secs(30),
            max_fails: 2,
            fail_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            network_timeout: Duration::from_secs(30),
            cache_path: None,
            cache_max_size: 1 << 30,
            cache_inactive: Duration::from_secs(30 * 86400),
            cache_valid: Duration::from_secs(12 * 3600),
            cache_sweep_interval: Duration::from_secs(60),
            expires: Duration::from_secs(30 * 86400),
            purge_allow: AllowHosts::parse(&["127.0.0.1".to_owned()])
                .expect("a literal address parses"),
            workers: 0,
            access_log: None,
            access_log_keep_days: 15,
        }
    }

    pub fn load(path: &Path) -> Result<GatewayConf, HttpError> {
        let ini = IniFile::load(path).map_err(|e| HttpError::Config(e.to_string()))?;
        Self::from_ini(&ini)
    }

    pub fn from_str(text: &str, path: &Path) -> Result<GatewayConf, HttpError> {
        let ini = IniFile::from_text(text, path).map_err(|e| HttpError::Config(e.to_string()))?;
        Self::from_ini(&ini)
    }

    fn from_ini(ini: &IniFile) -> Result<GatewayConf, HttpError> {
        let file = ini.path().display().to_string();
        let bad = |key: &str, line: u32, msg: String| {
            HttpError::Config(format!("{file}:{line}: {key}: {msg}"))
        };
        let get = |key: &str| ini.get(None, key);
        let dur = |key: &str, default: Duration| -> Result<Duration, HttpError> {
            match get(key) {
                Some(e) => parse_duration(&e.value).map_err(|m| bad(key, e.line, m)),
                None => Ok(default),
            }
        };
        let int = |key: &str, default: u64| -> Result<u64, HttpError> {
            match get(key) {
                Some(e) => value::parse_int::<u64>(&e.value).map_err(|m| bad(key, e.line, m)),
                None => Ok(default),
            }
        };
        let port = |key: &str, default: u16| -> Result<u16, HttpError> {
            match get(key) {
                Some(e) => match value::parse_int::<u16>(&e.value) {
                    Ok(p) if p > 0 => Ok(p),
                    Ok(_) => Err(bad(key, e.line, "port 0".into())),
                    Err(m) => Err(bad(key, e.line, m)),
                },
                None => Ok(default),
            }
        };
        let bind = get("bind_addr").map(|e| e.value.trim()).unwrap_or("");
        let bind = if bind.is_empty() { "0.0.0.0" } else { bind };
        let listen_port = port("port", 8000)?;
        let listen: SocketAddr = bind
            .parse::<std::net::IpAddr>()
            .map(|ip| SocketAddr::new(ip, listen_port))
            .map_err(|_| HttpError::Config(format!("{file}: bind_addr {bind:?} is not an IP")))?;
        let mut tracker_servers = Vec::new();
        for e in ini.get_all(None, "tracker_server") {
            let (hp, _) = value::parse_host_port(&e.value, 22122)
                .map_err(|m| bad("tracker_server", e.line, m))?;
            tracker_servers.push(hp);
        }
        if tracker_servers.is_empty() {
            return Err(HttpError::Config(format!(
                "{file}: at least one tracker_server is required"
            )));
        }
        let cache_path = get("cache_path")
            .map(|e| e.value.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let cache_max_size = match get("cache_max_size") {
            Some(e) => {
                value::parse_bytes(&e.value).map_err(|m| bad("cache_max_size", e.line, m))?
            }
            None => 1 << 30,
        };
        let allow: Vec<String> = ini
            .get_all(None, "purge_allow")
            .map(|e| e.value.clone())
            .collect();
        let purge_allow = if allow.is_empty() {
            AllowHosts::parse(&["127.0.0.1".to_owned()])
        } else {
            AllowHosts::parse(&allow)
        }
        .map_err(|m| HttpError::Config(format!("{file}: purge_allow: {m}")))?;
        let max_fails = int("max_fails", 2)?;
        let workers = int("workers", 0)?;
        if workers > MAX_WORKERS {
            return Err(HttpError::Config(format!(
                "{file}: workers {workers}: at most {MAX_WORKERS}"
            )));
        }
        let workers = workers as usize; // bounded just above
        let access_log = get("access_log")
            .map(|e| e.value.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let access_log_keep_days = match get("access_log_keep_days") {
            Some(e) => value::parse_int::<u32>(&e.value)
                .map_err(|m| bad("access_log_keep_days", e.line, m))?,
            None => 15,
        };
        Ok(GatewayConf {
            listen,
            tracker_servers,
            storage_http_port: port("storage_http_port", 8888)?,
            refresh_interval: dur("refresh_interval", Duration::from_secs(30))?,
            max_fails: u32::try_from(max_fails).unwrap_or(u32::MAX),
            fail_timeout: dur("fail_timeout", Duration::from_secs(30))?,
            connect_timeout: dur("connect_timeout", Duration::from_secs(5))?,
            network_timeout: dur("network_timeout", Duration::from_secs(30))?,
            cache_path,
            cache_max_size,
            cache_inactive: dur("cache_inactive", Duration::from_secs(30 * 86400))?,
            cache_valid: dur("cache_valid", Duration::from_secs(12 * 3600))?,
            cache_sweep_interval: dur("cache_sweep_interval", Duration::from_secs(60))?,
            expires: dur("expires", Duration::from_secs(30 * 86400))?,
            purge_allow,
            workers,
            access_log,
            access_log_keep_days,
        })
    }
}

/// nginx-style durations: `500ms`, `30s`, `5m`, `12h`, `30d`, or plain
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 12h, 30d)"))?;
    let secs = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too large"))
    };
    match unit.trim() {
        "" | "s" => secs(1),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        u => Err(format!("{s:?}: unknown unit {u:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn full_file_and_defaults() {
        let text = "port = 8001\ntracker_server = 127.0.0.1:22122\n\
                    tracker_server = 127.0.0.2:22122\ncache_path = /tmp/c\n\
                    cache_max_size = 2g\npurge_allow = 10.0.0.0/8\npurge_allow = 127.0.0.1\n\
                    max_fails = 3\nfail_timeout = 10s\nworkers = 3\n\
                    access_log = /var/log/fdfs/gw.log\naccess_log_keep_days = 7\n";
        let c = GatewayConf::from_str(text, Path::new("gw.conf")).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8001".parse().unwrap());
        assert_eq!(c.tracker_servers.len(), 2);
        assert_eq!(c.cache_max_size, 2 << 30);
        assert_eq!(c.max_fails, 3);
        assert_eq!(c.fail_timeout, Duration::from_secs(10));
        assert_eq!(c.workers, 3);
        assert_eq!(c.access_log, Some(PathBuf::from("/var/log/fdfs/gw.log")));
        assert_eq!(c.access_log_keep_days, 7);
        assert_eq!(c.storage_http_port, 8888);
        assert_eq!(c.cache_valid, Duration::from_secs(12 * 3600));
        assert!(c.purge_allow.allows("10.1.2.3".parse().unwrap()));
        assert!(c.purge_allow.allows("127.0.0.1".parse().unwrap()));
        assert!(!c.purge_allow.allows("192.168.1.1".parse().unwrap()));

        let c = GatewayConf::from_str("tracker_server=t:1\n", Path::new("g")).unwrap();
        let d = GatewayConf::new(c.tracker_servers.clone());
        assert_eq!(
            format!("{c:?}"),
            format!("{d:?}"),
            "new() and an empty file agree"
        );
        assert!(c.cache_path.is_none());
        assert!(c.access_log.is_none());
        assert!(c.purge_allow.allows("127.0.0.1".parse().unwrap()));
        assert!(!c.purge_allow.allows("127.0.0.2".parse().unwrap()));

        assert!(GatewayConf::from_str("port=8000\n", Path::new("g")).is_err());
        assert_eq!(c.workers, 0, "one per core by default");
        assert!(
            GatewayConf::from_str("tracker_server=t:1\nworkers=100000\n", Path::new("g")).is_err()
        );
        assert!(
            GatewayConf::from_str("tracker_server=t:1\nmax_fails=x\n", Path::new("g")).is_err()
        );
    }
}

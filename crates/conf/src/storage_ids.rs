//! storage_ids.conf (CONFIG.md §6): `<id> <group> <host>[:port] [rw=...]`
//! per line. Not the ini syntax: a line-oriented table.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use crate::allow::Resolver;
use crate::error::{ConfError, Warning};
use crate::types::{RwMode, StorageIdEntry, StorageIds};
use crate::value::{is_valid_group_name, parse_hosts_port};

/// Longest storage id (FDFS_STORAGE_ID_MAX_SIZE - 1).
pub const MAX_ID_LEN: usize = 15;
/// Largest numeric id: it must fit the 3 id bytes of a file id.
pub const MAX_NUMERIC_ID: u32 = 16_777_215;

impl StorageIdEntry {
    /// The id as a number, when it is a decimal in 1..=16777215 (required
    /// with `id_type_in_filename = id`).
    pub fn numeric_id(&self) -> Option<u32> {
        if self.id.is_empty() || !self.id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.id
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_NUMERIC_ID).contains(n))
    }

    /// Whether `ip` is one of this entry's addresses.
    pub fn has_ip(&self, ip: IpAddr) -> bool {
        self.addrs
            .iter()
            .any(|a| a.to_canonical() == ip.to_canonical())
    }

    /// The port, or 23000.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(crate::STORAGE_DEFAULT_PORT)
    }
}

impl StorageIds {
    /// Reads storage_ids.conf.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        Self::load_with_warnings(path).map(|(c, _)| c)
    }

    /// Parses storage_ids.conf text as if read from `path`.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfError> {
        Self::from_str_with_warnings(text, path).map(|(c, _)| c)
    }

    /// Like `load`, also returning the warnings.
    pub fn load_with_warnings(path: &Path) -> Result<(Self, Vec<Warning>), ConfError> {
        let bytes = std::fs::read(path).map_err(|e| ConfError::io(path, e))?;
        Self::from_str_with_warnings(&String::from_utf8_lossy(&bytes), path)
    }

    /// Like `from_str`, also returning the warnings.
    pub fn from_str_with_warnings(
        text: &str,
        path: &Path,
    ) -> Result<(Self, Vec<Warning>), ConfError> {
        let mut entries: Vec<StorageIdEntry> = Vec::new();
        let mut warnings = Vec::new();
        let mut ids = HashSet::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = u32::try_from(idx + 1).unwrap_or(u32::MAX);
            let err = |message: String| ConfError::Syntax {
                file: path.to_path_buf(),
                line: Some(line),
                message,
            };
            // A `#` starting a field starts a comment (whole line or trailing).
            let fields: Vec<&str> = raw
                .split_whitespace()
                .take_while(|f| !f.starts_with('#'))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let [id, group, host, rest @ ..] = fields.as_slice() else {
                return Err(err(format!(
                    "expected <id> <group_name> <host>[:port] [rw=...], got {:?}",
                    raw.trim()
                )));
            };
            if id.len() > MAX_ID_LEN {
                return Err(err(format!(
                    "id {id:?} is longer than {MAX_ID_LEN} characters"
                )));
            }
            if !ids.insert(id.to_string()) {
                return Err(err(format!("id {id:?} repeated")));
            }
            if !is_valid_group_name(group) {
                return Err(err(format!(
                    "{group:?} is not a group name (1 to 16 of A-Z a-z 0-9)"
                )));
            }
            let (hosts, port) = parse_hosts_port(host).map_err(err)?;
            let mut rw = RwMode::Both;
            for f in rest {
                let Some(mode) = f.strip_prefix("rw=") else {
                    return Err(err(format!(
                        "unexpected field {f:?} (expected rw=both|read|write|none)"
                    )));
                };
                rw = match mode.to_ascii_lowercase().as_str() {
                    "both" => RwMode::Both,
                    "read" => RwMode::Read,
                    "write" => RwMode::Write,
                    "none" => RwMode::None,
                    _ => {
                        return Err(err(format!(
                            "rw={mode}: expected both, read, write or none"
                        )))
                    }
                };
            }
            let addrs = hosts.iter().filter_map(|h| h.parse().ok()).collect();
            let entry = StorageIdEntry {
                id: id.to_string(),
                group_name: group.to_string(),
                hosts,
                addrs,
                port,
                rw,
            };
            if let Some(other) = entries.iter().find(|o| {
                o.port_or_default() == entry.port_or_default()
                    && o.hosts.iter().any(|h| entry.hosts.contains(h))
            }) {
                warnings.push(Warning::new(
                    path,
                    Some(line),
                    format!("{} has the same address and port as {}", entry.id, other.id),
                ));
            }
            entries.push(entry);
        }
        Ok((StorageIds { entries }, warnings))
    }

    /// Checks that every id is numeric in 1..=16777215 (needed when
    /// `id_type_in_filename = id`); the error names the first bad id.
    pub fn check_numeric_ids(&self) -> Result<(), String> {
        match self.entries.iter().find(|e| e.numeric_id().is_none()) {
            Some(e) => Err(format!(
                "storage id {:?} must be a number in 1..{MAX_NUMERIC_ID} when id_type_in_filename = id",
                e.id
            )),
            None => Ok(()),
        }
    }

    /// The entry with this id.
    pub fn by_id(&self, id: &str) -> Option<&StorageIdEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The entry of `group` with address `ip` and `port` (None = any port).
    pub fn by_addr(&self, group: &str, ip: IpAddr, port: Option<u16>) -> Option<&StorageIdEntry> {
        self.entries.iter().find(|e| {
            e.group_name == group && e.has_ip(ip) && port.is_none_or(|p| p == e.port_or_default())
        })
    }

    /// Resolves the host names of every entry (the daemon does, at start;
    /// parsing alone never queries DNS). A name that does not resolve is a
    /// warning: that entry is then matched by its other addresses only.
    pub fn resolve_names(&mut self, resolver: &Resolver<'_>, path: &Path) -> Vec<Warning> {
        let mut warnings = Vec::new();
        for e in &mut self.entries {
            for h in &e.hosts {
                if h.parse::<IpAddr>().is_ok() {
                    continue;
                }
                match resolver(h) {
                    Ok(ips) if !ips.is_empty() => {
                        for ip in ips {
                            if !e.addrs.contains(&ip) {
                                e.addrs.push(ip);
                            }
                        }
                    }
                    Ok(_) => warnings.push(Warning::new(
                        path,
                        None,
                        format!("{}: {h} resolves to no address", e.id),
                    )),
                    Err(err) => warnings.push(Warning::new(
                        path,
                        None,
                        format!("{}: cannot resolve {h}: {err}", e.id),
                    )),
                }
            }
        }
        warnings
    }

    /// Whether any address is IPv6 (response_ip_addr_size auto → 46).
    pub fn has_ipv6(&self) -> bool {
        self.entries
            .iter()
            .flat_map(|e| &e.addrs)
            .any(IpAddr::is_ipv6)
    }
}

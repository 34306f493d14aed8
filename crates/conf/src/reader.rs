//! Typed access to one section of an [`IniFile`]: converts values, applies
//! defaults, turns failures into located [`ConfError`]s, and at the end warns
//! about keys nobody asked for.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfError, Warning};
use crate::ini::{Entry, IniFile};
use crate::types::{HostPort, LogLevel, TimeOfDay};
use crate::value;

pub(crate) struct Reader<'a, 'w> {
    ini: &'a IniFile,
    section: Option<&'a str>,
    known: HashSet<String>,
    prefixes: Vec<&'static str>,
    pub(crate) warnings: &'w mut Vec<Warning>,
}

impl<'a, 'w> Reader<'a, 'w> {
    pub(crate) fn new(
        ini: &'a IniFile,
        section: Option<&'a str>,
        warnings: &'w mut Vec<Warning>,
    ) -> Self {
        Reader {
            ini,
            section,
            known: HashSet::new(),
            prefixes: Vec::new(),
            warnings,
        }
    }

    pub(crate) fn ini(&self) -> &'a IniFile {
        self.ini
    }

    /// Marks keys as accepted though not used (documented upstream keys).
    pub(crate) fn accept(&mut self, keys: &[&str]) {
        self.known.extend(keys.iter().map(|k| k.to_string()));
    }

    /// Accepts every key starting with `prefix`.
    pub(crate) fn accept_prefix(&mut self, prefix: &'static str) {
        self.prefixes.push(prefix);
    }

    /// The last entry for `key`; repeated single-valued keys warn.
    pub(crate) fn entry(&mut self, key: &str) -> Option<&'a Entry> {
        self.known.insert(key.to_string());
        let mut it = self.ini.get_all(self.section, key);
        let first = it.next()?;
        let last = it.last();
        if let Some(last) = last {
            self.warnings.push(Warning::new(
                &last.file,
                Some(last.line),
                format!(
                    "{key} repeated (first at {}:{}); the last value is used",
                    first.file.display(),
                    first.line
                ),
            ));
            return Some(last);
        }
        Some(first)
    }

    /// Every entry of a repeated key, in order.
    pub(crate) fn all(&mut self, key: &str) -> Vec<&'a Entry> {
        self.known.insert(key.to_string());
        self.ini.get_all(self.section, key).collect()
    }

    pub(crate) fn invalid(e: &Entry, message: impl Into<String>) -> ConfError {
        ConfError::Invalid {
            file: e.file.clone(),
            line: e.line,
            key: e.key.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn missing(&self, key: &str) -> ConfError {
        ConfError::Missing {
            file: self.ini.path().to_path_buf(),
            section: self.section.map(str::to_string),
            key: key.to_string(),
        }
    }

    pub(crate) fn warn(&mut self, e: Option<&Entry>, message: impl Into<String>) {
        let w = match e {
            Some(e) => Warning::new(&e.file, Some(e.line), message),
            None => Warning::new(self.ini.path(), None, message),
        };
        self.warnings.push(w);
    }

    pub(crate) fn string(&mut self, key: &str, default: &str) -> String {
        self.entry(key)
            .map_or_else(|| default.to_string(), |e| e.value.clone())
    }

    /// A required, non-empty value.
    pub(crate) fn required(&mut self, key: &str) -> Result<&'a Entry, ConfError> {
        match self.entry(key) {
            Some(e) if !e.value.is_empty() => Ok(e),
            _ => Err(self.missing(key)),
        }
    }

    pub(crate) fn bool(&mut self, key: &str, default: bool) -> bool {
        let Some(e) = self.entry(key) else {
            return default;
        };
        if !value::is_bool_word(&e.value) {
            // Upstream takes anything unknown as false; keep that, but say so.
            self.warn(
                Some(e),
                format!("{key}: {:?} is not a boolean; taken as false", e.value),
            );
        }
        value::parse_bool(&e.value)
    }

    pub(crate) fn parse<T>(
        &mut self,
        key: &str,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfError> {
        match self.entry(key) {
            None => Ok(default),
            Some(e) => f(&e.value).map_err(|m| Self::invalid(e, m)),
        }
    }

    /// An integer within `lo..=hi`.
    pub(crate) fn int<T>(&mut self, key: &str, default: T, lo: T, hi: T) -> Result<T, ConfError>
    where
        T: TryFrom<i128> + PartialOrd + Copy + std::fmt::Display,
    {
        self.parse(key, default, |s| {
            let v: T = value::parse_int(s)?;
            if v < lo || v > hi {
                return Err(format!("{s:?} is out of range ({lo}..{hi})"));
            }
            Ok(v)
        })
    }

    pub(crate) fn secs(&mut self, key: &str, default: u64) -> Result<Duration, ConfError> {
        let v = self.int(key, default, 0, u64::from(u32::MAX))?;
        Ok(Duration::from_secs(v))
    }

    pub(crate) fn millis(&mut self, key: &str, default: u64) -> Result<Duration, ConfError> {
        let v = self.int(key, default, 0, u64::from(u32::MAX))?;
        Ok(Duration::from_millis(v))
    }

    /// Seconds, where 0 (or absent) means the default, as upstream does for
    /// periods such as heart_beat_interval.
    pub(crate) fn period(&mut self, key: &str, default: u64) -> Result<Duration, ConfError> {
        let d = self.secs(key, default)?;
        if d.is_zero() {
            let e = self.ini.get(self.section, key);
            self.warn(
                e,
                format!("{key}: 0 is not a period; using the default {default}"),
            );
            return Ok(Duration::from_secs(default));
        }
        Ok(d)
    }

    pub(crate) fn bytes(&mut self, key: &str, default: u64) -> Result<u64, ConfError> {
        self.parse(key, default, value::parse_bytes)
    }

    pub(crate) fn time(&mut self, key: &str, default: TimeOfDay) -> Result<TimeOfDay, ConfError> {
        self.parse(key, default, value::parse_time)
    }

    pub(crate) fn log_level(&mut self) -> Result<LogLevel, ConfError> {
        self.parse("log_level", LogLevel::Info, value::parse_log_level)
    }

    /// A path; relative paths are resolved against the directory of the file
    /// that sets them (or of the top-level file for the default).
    pub(crate) fn rel_path(&mut self, key: &str, default: &str) -> PathBuf {
        match self.entry(key) {
            Some(e) if !e.value.is_empty() => resolve(&e.file, &e.value),
            _ => resolve(self.ini.path(), default),
        }
    }

    /// `tracker_server` lines: `host:port` each; the second of a dual
    /// address is reported as a warning (only the first is used).
    pub(crate) fn host_ports(
        &mut self,
        key: &str,
        default_port: u16,
    ) -> Result<Vec<HostPort>, ConfError> {
        let mut out = Vec::new();
        for e in self.all(key) {
            let (hp, second) =
                value::parse_host_port(&e.value, default_port).map_err(|m| Self::invalid(e, m))?;
            if let Some(second) = second {
                self.warn(
                    Some(e),
                    format!(
                        "{key}: using {} of the dual address; {second} is ignored",
                        hp.host
                    ),
                );
            }
            if out.contains(&hp) {
                self.warn(Some(e), format!("{key}: {hp} repeated; ignored"));
                continue;
            }
            out.push(hp);
        }
        Ok(out)
    }

    /// Warns about every key of the section that was neither read nor accepted.
    pub(crate) fn finish(self) {
        for e in self.ini.entries(self.section) {
            let k = e.key.as_str();
            if self.known.contains(k) || self.prefixes.iter().any(|p| k.starts_with(p)) {
                continue;
            }
            let w = Warning::new(&e.file, Some(e.line), format!("unknown key {k} ignored"));
            self.warnings.push(w);
        }
    }
}

/// `value` relative to the directory of `file`.
pub(crate) fn resolve(file: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    match file.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

//! The libfastcommon ini syntax (CONFIG.md §1): `key = value` lines, `#`
//! comments, `#include`, `[section]`, repeated keys kept in order.
//!
//! This module only splits text into located entries; it knows no key and
//! converts no value. [`IniFile::parse_str`] does no I/O at all (includes are
//! refused), so it can be fed arbitrary bytes by a fuzzer; it never panics.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{ConfError, Warning};

/// Longest key kept (longer keys are truncated with a warning).
pub const MAX_KEY_LEN: usize = 63;
/// Longest value kept (longer values are truncated with a warning).
pub const MAX_VALUE_LEN: usize = 255;
/// Nested includes deeper than this are refused (also stops symlink loops).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// One `key = value`, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// The file the line is in (an included file for included keys).
    pub file: PathBuf,
    /// 1-based line number in `file`.
    pub line: u32,
}

/// A `[name]` section; repeated sections are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<Entry>,
}

/// A parsed .conf file, includes expanded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IniFile {
    path: PathBuf,
    global: Vec<Entry>,
    sections: Vec<Section>,
    warnings: Vec<Warning>,
}

/// Reads an included file; gets the resolved path.
pub type Loader<'a> = dyn FnMut(&Path) -> io::Result<String> + 'a;

impl IniFile {
    /// Parses `text` as if read from `path`, without any file I/O: an
    /// `#include` is an error.
    pub fn parse_str(text: &str, path: &Path) -> Result<IniFile, ConfError> {
        let mut no_io = |_: &Path| -> io::Result<String> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "includes are not resolved here (no file I/O)",
            ))
        };
        Self::parse_with_loader(text, path, &mut no_io)
    }

    /// Parses `text` as if read from `path`; includes are read from disk,
    /// relative to the including file's directory.
    pub fn from_text(text: &str, path: &Path) -> Result<IniFile, ConfError> {
        Self::parse_with_loader(text, path, &mut read_lossy)
    }

    /// Reads and parses `path` and everything it includes.
    pub fn load(path: &Path) -> Result<IniFile, ConfError> {
        let text = read_lossy(path).map_err(|e| ConfError::io(path, e))?;
        Self::from_text(&text, path)
    }

    /// Parses `text` as if read from `path`; `loader` supplies included files.
    pub fn parse_with_loader(
        text: &str,
        path: &Path,
        loader: &mut Loader<'_>,
    ) -> Result<IniFile, ConfError> {
        let mut ini = IniFile {
            path: path.to_path_buf(),
            ..IniFile::default()
        };
        let mut stack = vec![normalize(path)];
        ini.parse_into(text, path, loader, &mut stack)?;
        Ok(ini)
    }

    /// The top-level file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keys outside any section (and after every `[]` or include).
    pub fn global(&self) -> &[Entry] {
        &self.global
    }

    /// All sections in order of first appearance.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The entries of `[name]`, if the section exists.
    pub fn section(&self, name: &str) -> Option<&[Entry]> {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.entries.as_slice())
    }

    /// Entries of the global section (`None`) or of `[name]`.
    pub fn entries(&self, section: Option<&str>) -> &[Entry] {
        match section {
            None => &self.global,
            Some(name) => self.section(name).unwrap_or(&[]),
        }
    }

    /// The last value of `key` (later lines override earlier ones).
    pub fn get(&self, section: Option<&str>, key: &str) -> Option<&Entry> {
        self.entries(section).iter().rev().find(|e| e.key == key)
    }

    /// Every value of a repeated key, in file order.
    pub fn get_all<'s, 'k>(
        &'s self,
        section: Option<&str>,
        key: &'k str,
    ) -> impl Iterator<Item = &'s Entry> + use<'s, 'k> {
        self.entries(section).iter().filter(move |e| e.key == key)
    }

    /// Warnings raised while parsing (truncations, ignored lines...).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    fn parse_into(
        &mut self,
        text: &str,
        file: &Path,
        loader: &mut Loader<'_>,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), ConfError> {
        // Index into self.sections; None = global. Each file starts global.
        let mut current: Option<usize> = None;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.lines().enumerate() {
            let line_no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                if let Some(target) = include_target(rest) {
                    self.include(target, file, line_no, loader, stack)?;
                    // CONFIG.md: parsing continues in the global section.
                    current = None;
                } else if rest.starts_with('@') {
                    let directive = rest.split_whitespace().next().unwrap_or("@");
                    self.warn(
                        file,
                        line_no,
                        format!("directive #{directive} is not supported; line ignored"),
                    );
                }
                continue;
            }
            if line.len() >= 2 && line.starts_with('[') && line.ends_with(']') {
                let name = line[1..line.len() - 1].trim();
                current = if name.is_empty() {
                    None
                } else if let Some(i) = self.sections.iter().position(|s| s.name == name) {
                    Some(i)
                } else {
                    self.sections.push(Section {
                        name: name.to_string(),
                        entries: Vec::new(),
                    });
                    Some(self.sections.len() - 1)
                };
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                self.warn(file, line_no, "line without '=' ignored");
                continue;
            };
            let mut key = k.trim_end().to_string();
            let mut value = v.trim_start().to_string();
            if key.is_empty() {
                self.warn(file, line_no, "line with an empty key ignored");
                continue;
            }
            if key.len() > MAX_KEY_LEN {
                truncate(&mut key, MAX_KEY_LEN);
                self.warn(
                    file,
                    line_no,
                    format!("key longer than {MAX_KEY_LEN} bytes truncated to {key:?}"),
                );
            }
            if value.len() > MAX_VALUE_LEN {
                truncate(&mut value, MAX_VALUE_LEN);
                self.warn(
                    file,
                    line_no,
                    format!("{key}: value longer than {MAX_VALUE_LEN} bytes truncated"),
                );
            }
            let entry = Entry {
                key,
                value,
                file: file.to_path_buf(),
                line: line_no,
            };
            match current {
                None => self.global.push(entry),
                Some(i) => self.sections[i].entries.push(entry),
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        target: &str,
        file: &Path,
        line: u32,
        loader: &mut Loader<'_>,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), ConfError> {
        let err = |reason: String| ConfError::Include {
            file: file.to_path_buf(),
            line,
            target: PathBuf::from(target),
            reason,
        };
        if target.starts_with("http://") || target.starts_with("https://") {
            return Err(err("including a URL is not supported".into()));
        }
        let resolved = match file.parent() {
            Some(dir) if !Path::new(target).is_absolute() => dir.join(target),
            _ => PathBuf::from(target),
        };
        let norm = normalize(&resolved);
        if stack.contains(&norm) {
            return Err(err(format!(
                "include loop ({} is already being read)",
                resolved.display()
            )));
        }
        if stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(err(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH}"
            )));
        }
        let text = loader(&resolved).map_err(|e| err(format!("{}: {e}", resolved.display())))?;
        stack.push(norm);
        let r = self.parse_into(&text, &resolved, loader, stack);
        stack.pop();
        r
    }

    fn warn(&mut self, file: &Path, line: u32, message: impl Into<String>) {
        self.warnings.push(Warning::new(file, Some(line), message));
    }
}

/// `include file` after the `#`: exactly `include` then a space or tab.
fn include_target(after_hash: &str) -> Option<&str> {
    let rest = after_hash.strip_prefix("include")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let target = rest.trim();
    (!target.is_empty()).then_some(target)
}

fn read_lossy(path: &Path) -> io::Result<String> {
    let bytes = std::fs::read(path)?;
    // Old configs carry GBK comments; keys and values are ASCII in practice.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Truncates to at most `max` bytes on a char boundary.
fn truncate(s: &mut String, max: usize) {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// Lexical normalisation (`.` and `..` removed) for include-loop detection.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IniFile {
        IniFile::parse_str(s, Path::new("t.conf")).unwrap()
    }

    #[test]
    fn basic_lines() {
        let ini = p("  a = 1 \n#c\n\nb=x = y\nc= 1 # not a comment\nnovalue\n");
        let g = ini.global();
        assert_eq!(g.len(), 3);
        assert_eq!(
            (g[0].key.as_str(), g[0].value.as_str(), g[0].line),
            ("a", "1", 1)
        );
        assert_eq!(g[1].value, "x = y");
        assert_eq!(g[2].value, "1 # not a comment");
        assert_eq!(ini.warnings().len(), 1);
        assert_eq!(ini.warnings()[0].line, Some(6));
    }

    #[test]
    fn sections_merge_and_return() {
        let ini = p("a=1\n[s]\nb=2\n[]\nc=3\n[t]\nd=4\n[s]\ne=5\n");
        assert_eq!(
            ini.global().iter().map(|e| &e.key[..]).collect::<Vec<_>>(),
            ["a", "c"]
        );
        let s: Vec<_> = ini
            .section("s")
            .unwrap()
            .iter()
            .map(|e| &e.key[..])
            .collect();
        assert_eq!(s, ["b", "e"]);
        assert_eq!(ini.sections().len(), 2);
        assert!(ini.section("nope").is_none());
    }

    #[test]
    fn repeated_and_last_wins() {
        let ini = p("k=1\nk=2\nk=3\n");
        let all: Vec<_> = ini.get_all(None, "k").map(|e| &e.value[..]).collect();
        assert_eq!(all, ["1", "2", "3"]);
        assert_eq!(ini.get(None, "k").unwrap().value, "3");
    }

    #[test]
    fn truncation() {
        let long_key = "k".repeat(70);
        let long_val = "é".repeat(200); // 400 bytes, 2-byte chars
        let ini = p(&format!("{long_key}=1\nv={long_val}\n"));
        assert_eq!(ini.global()[0].key.len(), MAX_KEY_LEN);
        assert!(ini.global()[1].value.len() <= MAX_VALUE_LEN);
        assert!(ini.global()[1].value.len() >= MAX_VALUE_LEN - 1);
        assert_eq!(ini.warnings().len(), 2);
    }

    #[test]
    fn directives_and_comments() {
        let ini = p("#@set x = 1\n#includefoo\n# include x\n#@if a\nk=v\n");
        assert_eq!(ini.global().len(), 1);
        assert_eq!(ini.warnings().len(), 2);
    }

    #[test]
    fn parse_str_refuses_includes() {
        let e = IniFile::parse_str("#include other.conf\n", Path::new("/etc/a.conf")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/etc/a.conf:1"), "{msg}");
        assert!(msg.contains("other.conf"), "{msg}");
    }

    #[test]
    fn loader_includes_and_loops() {
        let mut loader = |p: &Path| -> io::Result<String> {
            match p.to_str().unwrap() {
                "/c/inc.conf" => Ok("x=1\n[sec]\ny=2\n".into()),
                "/c/sub/self.conf" => Ok("#include ../loop.conf\n".into()),
                "/c/loop.conf" => Ok("#include sub/self.conf\n".into()),
                _ => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        };
        let ini = IniFile::parse_with_loader(
            "[a]\n#include inc.conf\nz=3\n",
            Path::new("/c/main.conf"),
            &mut loader,
        )
        .unwrap();
        assert_eq!(
            ini.global().iter().map(|e| &e.key[..]).collect::<Vec<_>>(),
            ["x", "z"]
        );
        assert_eq!(ini.global()[0].file, Path::new("/c/inc.conf"));
        assert_eq!(ini.section("sec").unwrap()[0].value, "2");
        let e = IniFile::parse_with_loader(
            "#include loop.conf\n",
            Path::new("/c/loop.conf"),
            &mut loader,
        )
        .unwrap_err();
        assert!(e.to_string().contains("loop"), "{e}");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("../x")), Path::new("../x"));
    }
}

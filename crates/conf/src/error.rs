//! Errors and warnings of the loaders. Every message names the file, and the
//! line and key when there is one, so an operator can go straight to it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file (or an included file) could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A value that does not parse or is out of range.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: u32,
        key: String,
        message: String,
    },
    /// A required key is absent (`section` is None for the global section).
    #[error("{}: missing required key {key}{}", file.display(), section_suffix(section))]
    Missing {
        file: PathBuf,
        section: Option<String>,
        key: String,
    },
    /// An `#include` that cannot be honoured (missing file, loop, too deep).
    #[error("{}:{line}: #include {}: {reason}", file.display(), target.display())]
    Include {
        file: PathBuf,
        line: u32,
        target: PathBuf,
        reason: String,
    },
    /// A malformed line of a line-oriented file (storage_ids.conf), or a
    /// rule spanning several keys (e.g. url_have_group_name vs group_count).
    #[error("{}{}: {message}", file.display(), line_suffix(*line))]
    Syntax {
        file: PathBuf,
        line: Option<u32>,
        message: String,
    },
}

fn section_suffix(section: &Option<String>) -> String {
    match section {
        Some(s) => format!(" in section [{s}]"),
        None => String::new(),
    }
}

fn line_suffix(line: Option<u32>) -> String {
    match line {
        Some(l) => format!(":{l}"),
        None => String::new(),
    }
}

impl ConfError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ConfError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Something odd but not fatal (unknown key, truncated value, ignored
/// directive...). Also logged with `tracing::warn!` when created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}

impl Warning {
    pub(crate) fn new(file: &Path, line: Option<u32>, message: impl Into<String>) -> Self {
        let w = Warning {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        };
        tracing::warn!("{w}");
        w
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

//! Storage binlog records (PROTOCOL.md §9.1): one text line per change,
//! `<unix_ts> <op> <logic filename>[ <extra>]\n`, at most 256 bytes.
//!
//! Upper-case ops were done on this server by a client (it is the source);
//! lower-case ops were applied because a peer synced them.

use std::fmt;

use crate::error::DecodeError;
use crate::file_id::LogicName;

/// Longest record line, newline included.
pub const MAX_RECORD_LEN: usize = 256;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinlogOp {
    /// File created (upload, slave, metadata file created).
    Create,
    /// File deleted.
    Delete,
    /// Whole file replaced (metadata rewritten).
    Update,
    Append {
        offset: u64,
        length: u64,
    },
    Modify {
        offset: u64,
        length: u64,
    },
    Truncate {
        old_size: u64,
        new_size: u64,
    },
    /// The record's file is a symlink to `target`.
    Link {
        target: String,
    },
    /// An appender renamed to the record's (normal) file name.
    Rename {
        old: String,
    },
}

impl BinlogOp {
    /// The upper-case op letter.
    pub fn letter(&self) -> char {
        match self {
            BinlogOp::Create => 'C',
            BinlogOp::Delete => 'D',
            BinlogOp::Update => 'U',
            BinlogOp::Append { .. } => 'A',
            BinlogOp::Modify { .. } => 'M',
            BinlogOp::Truncate { .. } => 'T',
            BinlogOp::Link { .. } => 'L',
            BinlogOp::Rename { .. } => 'R',
        }
    }
}

/// One binlog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogRecord {
    pub timestamp: u32,
    /// True for upper case: the change came from a client on this server.
    pub is_source: bool,
    pub filename: String,
    pub op: BinlogOp,
}

impl BinlogRecord {
    /// The line, newline included.
    pub fn encode(&self) -> String {
        let mut s = self.to_string();
        s.push('\n');
        s
    }

    /// Parses one line (with or without its trailing newline).
    pub fn decode(line: &str) -> Result<BinlogRecord, DecodeError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.len() >= MAX_RECORD_LEN {
            return Err(DecodeError::field("binlog record", "longer than 255 bytes"));
        }
        let mut parts = line.split(' ');
        let ts = parts
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .ok_or_else(|| DecodeError::field("binlog timestamp", "not a number"))?;
        let op = parts
            .next()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| DecodeError::field("binlog op", "missing"))?;
        let letter = op.chars().next().unwrap_or(' ');
        let filename = parts
            .next()
            .ok_or_else(|| DecodeError::field("binlog filename", "missing"))?;
        check_name("binlog filename", filename)?;
        let extra: Vec<&str> = parts.collect();
        let num = |i: usize, f: &'static str| -> Result<u64, DecodeError> {
            extra
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| DecodeError::field(f, "missing or not a number"))
        };
        let want_extra = |n: usize| -> Result<(), DecodeError> {
            if extra.len() != n {
                return Err(DecodeError::field(
                    "binlog record",
                    format!("expected {n} extra fields, found {}", extra.len()),
                ));
            }
            Ok(())
        };
        let op = match letter.to_ascii_uppercase() {
            'C' | 'D' | 'U' => {
                want_extra(0)?;
                match letter.to_ascii_uppercase() {
                    'C' => BinlogOp::Create,
                    'D' => BinlogOp::Delete,
                    _ => BinlogOp::Update,
                }
            }
            'A' | 'M' => {
                want_extra(2)?;
                let (offset, length) = (num(0, "binlog offset")?, num(1, "binlog length")?);
                if letter.eq_ignore_ascii_case(&'A') {
                    BinlogOp::Append { offset, length }
                } else {
                    BinlogOp::Modify { offset, length }
                }
            }
            'T' => {
                want_extra(2)?;
                BinlogOp::Truncate {
                    old_size: num(0, "binlog old size")?,
                    new_size: num(1, "binlog new size")?,
                }
            }
            'L' | 'R' => {
                want_extra(1)?;
                let other = extra[0].to_owned();
                check_name("binlog second filename", &other)?;
                if letter.eq_ignore_ascii_case(&'L') {
                    BinlogOp::Link { target: other }
                } else {
                    BinlogOp::Rename { old: other }
                }
            }
            _ => {
                return Err(DecodeError::field(
                    "binlog op",
                    format!("unknown op {letter:?}"),
                ))
            }
        };
        Ok(BinlogRecord {
            timestamp: ts,
            is_source: letter.is_ascii_uppercase(),
            filename: filename.to_owned(),
            op,
        })
    }
}

/// A binlog name is a logic filename, possibly with the `-m` metadata suffix.
fn check_name(field: &'static str, name: &str) -> Result<(), DecodeError> {
    LogicName::parse(name)
        .map(|_| ())
        .map_err(|e| DecodeError::field(field, e.to_string()))
}

impl fmt::Display for BinlogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.op.letter();
        let l = if self.is_source {
            l
        } else {
            l.to_ascii_lowercase()
        };
        write!(f, "{} {} {}", self.timestamp, l, self.filename)?;
        match &self.op {
            BinlogOp::Create | BinlogOp::Delete | BinlogOp::Update => Ok(()),
            BinlogOp::Append { offset, length } | BinlogOp::Modify { offset, length } => {
                write!(f, " {offset} {length}")
            }
            BinlogOp::Truncate { old_size, new_size } => write!(f, " {old_size} {new_size}"),
            BinlogOp::Link { target } => write!(f, " {target}"),
            BinlogOp::Rename { old } => write!(f, " {old}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_binlog_lines_round_trip() {
        let text =
            include_str!("../../../testdata/golden/disk/storage_binlog_ops_sync_scenario.txt");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let r = BinlogRecord::decode(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(r.to_string(), line);
            n += 1;
        }
        assert!(n > 10);
    }

    #[test]
    fn decodes_each_op() {
        let r = BinlogRecord::decode(
            "1589774253 a M00/00/00/wKgLU17CB62EDy-HAAAAqoZV9hQ128.zip 10 21\n",
        )
        .unwrap();
        assert!(!r.is_source);
        assert_eq!(
            r.op,
            BinlogOp::Append {
                offset: 10,
                length: 21
            }
        );
        assert_eq!(r.timestamp, 1589774253);
    }

    #[test]
    fn refuses_bad_lines() {
        for l in [
            "",
            "x C M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "1 Q M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "1 C ../../etc/passwd",
            "1 A M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip 1",
            "1 A M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip -1 2",
            "1 C M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip extra",
        ] {
            assert!(BinlogRecord::decode(l).is_err(), "{l:?} accepted");
        }
    }
}

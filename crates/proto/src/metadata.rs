//! Metadata lists (PROTOCOL.md §1.5): `name\x02value` records joined by `\x01`.
//!
//! Names and values are bytes (clients send any encoding). The storage keeps
//! lists sorted by name in a `-m` sidecar file in this same encoding.

use crate::error::DecodeError;

pub const RECORD_SEP: u8 = 0x01;
pub const FIELD_SEP: u8 = 0x02;
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_VALUE_LEN: usize = 256;

/// One metadata entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetaPair {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl MetaPair {
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        MetaPair {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Parses a metadata list. Records without a field separator are skipped
/// (as upstream does); over-long names and values are truncated to 64 and
/// 256 bytes. An empty name is refused.
pub fn decode(b: &[u8]) -> Result<Vec<MetaPair>, DecodeError> {
    let mut out = Vec::new();
    if b.is_empty() {
        return Ok(out);
    }
    for rec in b.split(|&c| c == RECORD_SEP) {
        let Some(p) = rec.iter().position(|&c| c == FIELD_SEP) else {
            continue;
        };
        let (name, value) = (&rec[..p], &rec[p + 1..]);
        if name.is_empty() {
            return Err(DecodeError::field("metadata", "empty name"));
        }
        // A value may not itself contain the field separator.
        if value.contains(&FIELD_SEP) {
            return Err(DecodeError::field(
                "metadata",
                "value contains a field separator",
            ));
        }
        out.push(MetaPair {
            name: name[..name.len().min(MAX_NAME_LEN)].to_vec(),
            value: value[..value.len().min(MAX_VALUE_LEN)].to_vec(),
        });
    }
    Ok(out)
}

/// Encodes a list in the order given.
pub fn encode(pairs: &[MetaPair]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEP);
        }
        out.extend_from_slice(&p.name);
        out.push(FIELD_SEP);
        out.extend_from_slice(&p.value);
    }
    out
}

/// Sorts by name (byte-wise) and keeps the last value of a repeated name.
pub fn normalize(mut pairs: Vec<MetaPair>) -> Vec<MetaPair> {
    // Stable sort keeps input order among equal names; keep the last one.
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<MetaPair> = Vec::with_capacity(pairs.len());
    for p in pairs {
        match out.last_mut() {
            Some(last) if last.name == p.name => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Merges `new` into `old`: same names take the new value. Result sorted.
pub fn merge(old: Vec<MetaPair>, new: Vec<MetaPair>) -> Vec<MetaPair> {
    let mut all = old;
    all.extend(new);
    normalize(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_from_the_protocol() {
        let b = b"width\x02100\x01author\x02bob";
        let m = decode(b).unwrap();
        assert_eq!(
            m,
            vec![
                MetaPair::new("width", "100"),
                MetaPair::new("author", "bob")
            ]
        );
        assert_eq!(encode(&m), b.to_vec());
        let sorted = normalize(m);
        assert_eq!(encode(&sorted), b"author\x02bob\x01width\x02100".to_vec());
    }

    #[test]
    fn merge_replaces_same_names() {
        let old = decode(b"a\x021\x01b\x022").unwrap();
        let new = decode(b"b\x02x\x01c\x023").unwrap();
        assert_eq!(
            encode(&merge(old, new)),
            b"a\x021\x01b\x02x\x01c\x023".to_vec()
        );
    }

    #[test]
    fn skips_records_without_separator_and_truncates() {
        let long = vec![b'v'; 300];
        let mut b = b"junk\x01n\x02".to_vec();
        b.extend_from_slice(&long);
        let m = decode(&b).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].value.len(), MAX_VALUE_LEN);
    }

    #[test]
    fn refuses_empty_name() {
        assert!(matches!(
            decode(b"\x02v"),
            Err(DecodeError::InvalidField {
                field: "metadata",
                ..
            })
        ));
    }
}

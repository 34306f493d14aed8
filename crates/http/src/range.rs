//! `Range: bytes=...` parsing (PROTOCOL.md §10.4).

/// At most this many ranges in one request; more is refused (416), so a
/// client cannot make us write thousands of multipart headers.
pub const MAX_RANGES: usize = 16;

/// One satisfiable byte range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header (absent or not a `bytes=` unit): whole file.
    Full,
    /// One or more satisfiable ranges, in request order.
    Ranges(Vec<ByteRange>),
    /// Malformed or unsatisfiable: 416.
    Unsatisfiable,
}

/// Parses a Range header value against a file of `size` bytes.
///
/// `bytes=a-b`, `bytes=a-`, `bytes=-n` and comma lists. A negative start
/// (suffix) counts from the end and is clamped to 0; an end past the file is
/// clamped; a start at or past the end of the file, or start > end, makes the
/// whole request unsatisfiable (as the nginx module does).
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Full;
    };
    let value = value.trim();
    let Some(spec) = value.strip_prefix("bytes=") else {
        // Another unit: ignore the header, as RFC 9110 allows.
        return RangeRequest::Full;
    };
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if out.len() == MAX_RANGES {
            return RangeRequest::Unsatisfiable;
        }
        let Some((a, b)) = part.split_once('-') else {
            return RangeRequest::Unsatisfiable;
        };
        let (a, b) = (a.trim(), b.trim());
        let r = if a.is_empty() {
            // Suffix: the last n bytes.
            let Some(n) = parse_u64(b) else {
                return RangeRequest::Unsatisfiable;
            };
            if n == 0 || size == 0 {
                return RangeRequest::Unsatisfiable;
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        } else {
            let Some(start) = parse_u64(a) else {
                return RangeRequest::Unsatisfiable;
            };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match parse_u64(b) {
                    Some(e) => e.min(size.saturating_sub(1)),
                    None => return RangeRequest::Unsatisfiable,
                }
            };
            if start >= size || start > end {
                return RangeRequest::Unsatisfiable;
            }
            ByteRange { start, end }
        };
        out.push(r);
    }
    if out.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Ranges(out)
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn forms() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=1-2"), 10), RangeRequest::Full);
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10),
            RangeRequest::Ranges(vec![r(0, 3)])
        );
        assert_eq!(
            parse_range(Some("bytes=4-"), 10),
            RangeRequest::Ranges(vec![r(4, 9)])
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            RangeRequest::Ranges(vec![r(7, 9)])
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            RangeRequest::Ranges(vec![r(0, 9)])
        );
        assert_eq!(
            parse_range(Some("bytes=2-100"), 10),
            RangeRequest::Ranges(vec![r(2, 9)])
        );
        assert_eq!(
            parse_range(Some("bytes=0-0, 5-6 ,-1"), 10),
            RangeRequest::Ranges(vec![r(0, 0), r(5, 6), r(9, 9)])
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=",
            "bytes=a-b",
            "bytes=1",
            "bytes=-0",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(
                parse_range(Some(bad), 10),
                RangeRequest::Unsatisfiable,
                "{bad}"
            );
        }
        assert_eq!(
            parse_range(Some("bytes=0-"), 0),
            RangeRequest::Unsatisfiable
        );
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse_range(Some(&many), 10), RangeRequest::Unsatisfiable);
    }
}

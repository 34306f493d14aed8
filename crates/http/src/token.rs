//! Anti-steal tokens (PROTOCOL.md §10.3):
//! `lower_hex(md5(filename_without_group + secret_key + decimal(ts)))`.

use md5::{Digest, Md5};
use std::time::Duration;

/// Computes the token for a logic filename (`M00/00/00/x.jpg`, no group, no
/// leading slash).
pub fn make_token(logic_filename: &str, secret: &str, ts: u64) -> String {
    let mut h = Md5::new();
    h.update(logic_filename.as_bytes());
    h.update(secret.as_bytes());
    h.update(ts.to_string().as_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// `token` or `ts` absent (or `ts` not a number).
    Missing,
    Expired,
    Invalid,
}

/// Checks `token`/`ts` query values for `logic_filename` at time `now`.
pub fn check_token(
    logic_filename: &str,
    secret: &str,
    ttl: Duration,
    token: Option<&str>,
    ts: Option<&str>,
    now: u64,
) -> Result<(), TokenError> {
    let (Some(token), Some(ts)) = (token, ts) else {
        return Err(TokenError::Missing);
    };
    let ts_num: u64 = match ts.parse() {
        Ok(v) if !ts.is_empty() && ts.bytes().all(|c| c.is_ascii_digit()) => v,
        _ => return Err(TokenError::Missing),
    };
    if token.len() != 32 {
        return Err(TokenError::Invalid);
    }
    if ts_num != 0 && now.saturating_sub(ts_num) > ttl.as_secs() {
        return Err(TokenError::Expired);
    }
    // The decimal text the signer used is the one in the URL; re-format it so
    // `ts=0001` cannot be used to vary a token.
    if make_token(logic_filename, secret, ts_num) != token {
        return Err(TokenError::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_example() {
        // md5("M00/00/00/a.jpg" + "FastDFS1234567890" + "1700000000")
        let t = make_token("M00/00/00/a.jpg", "FastDFS1234567890", 1_700_000_000);
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let mut h = Md5::new();
        h.update(b"M00/00/00/a.jpgFastDFS12345678901700000000");
        let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t, want);
    }

    #[test]
    fn known_md5() {
        // RFC 1321 test vector: md5("abc").
        assert_eq!(make_token("a", "b", 0), {
            let mut h = Md5::new();
            h.update(b"ab0");
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        let mut h = Md5::new();
        h.update(b"abc");
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn checks() {
        let ttl = Duration::from_secs(600);
        let f = "M00/00/00/a.jpg";
        let t = make_token(f, "s", 1000);
        assert_eq!(
            check_token(f, "s", ttl, Some(&t), Some("1000"), 1500),
            Ok(())
        );
        assert_eq!(
            check_token(f, "s", ttl, Some(&t), Some("1000"), 1601),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check_token(f, "x", ttl, Some(&t), Some("1000"), 1500),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            check_token("M00/00/00/b.jpg", "s", ttl, Some(&t), Some("1000"), 1500),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            check_token(f, "s", ttl, Some(&t.to_uppercase()), Some("1000"), 1500),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            check_token(f, "s", ttl, None, Some("1000"), 1500),
            Err(TokenError::Missing)
        );
        assert_eq!(
            check_token(f, "s", ttl, Some(&t), Some("-5"), 1500),
            Err(TokenError::Missing)
        );
        let t0 = make_token(f, "s", 0);
        assert_eq!(
            check_token(f, "s", ttl, Some(&t0), Some("0"), 1 << 40),
            Ok(())
        );
    }
}

//! Value syntaxes of CONFIG.md §1: booleans, integers, byte sizes, percents,
//! times of day, host:port and log levels. Each parser returns a message
//! (without file/key: the caller adds them) on failure.

use std::net::{IpAddr, Ipv6Addr};

use crate::types::{DurableSync, HostPort, LogLevel, ReservedSpace, TimeOfDay};

/// `true`, `yes`, `on` (any case) or exactly `1`; anything else is false,
/// like upstream. See [`is_bool_word`] to warn about odd values.
pub fn parse_bool(s: &str) -> bool {
    let s = s.trim();
    s == "1"
        || ["true", "yes", "on"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w))
}

/// Whether `s` is a recognised spelling of true or false.
pub fn is_bool_word(s: &str) -> bool {
    let s = s.trim();
    s == "1"
        || s == "0"
        || ["true", "yes", "on", "false", "no", "off"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w))
}

/// A decimal integer (optional sign), converted to `T`.
pub fn parse_int<T: TryFrom<i128>>(s: &str) -> Result<T, String> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number"));
    }
    let n: i128 = t.parse().map_err(|_| format!("{s:?} is out of range"))?;
    T::try_from(n).map_err(|_| format!("{s:?} is out of range"))
}

/// `parse_bytes`: an integer, optional spaces, optional K/M/G/T (powers of
/// 1024), optional B. Negative values and fractions are errors.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{s:?}: a size cannot be negative"));
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, rest) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("{s:?} is not a size (e.g. 256MB, 4GB, 512k)"));
    }
    let mut unit = rest.trim_start();
    if unit.starts_with('.') {
        return Err(format!("{s:?}: fractions are not accepted in sizes"));
    }
    let mut shift = 0u32;
    if let Some(c) = unit.chars().next() {
        shift = match c.to_ascii_uppercase() {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => 0,
        };
        if shift > 0 {
            unit = &unit[1..];
        }
    }
    if unit.eq_ignore_ascii_case("b") {
        unit = "";
    }
    if !unit.is_empty() {
        return Err(format!("{s:?} is not a size (unknown unit {unit:?})"));
    }
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `reserved_storage_space`: `NN.NN%` (0 < ratio < 100) or a byte size.
pub fn parse_reserved(s: &str) -> Result<ReservedSpace, String> {
    let t = s.trim();
    let Some(pct) = t.strip_suffix('%') else {
        return parse_bytes(t).map(ReservedSpace::Bytes);
    };
    let pct = pct.trim();
    let ok_chars = !pct.is_empty()
        && pct.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && pct.bytes().filter(|&b| b == b'.').count() <= 1;
    let v: f64 = if ok_chars { pct.parse().ok() } else { None }
        .ok_or_else(|| format!("{s:?} is not a percentage"))?;
    if !(v > 0.0 && v < 100.0) {
        return Err(format!("{s:?}: the percentage must be > 0 and < 100"));
    }
    Ok(ReservedSpace::Ratio(v / 100.0))
}

/// `HH:MM`, 24 hour clock.
pub fn parse_time(s: &str) -> Result<TimeOfDay, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM)");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let field = |x: &str, max: u8| -> Option<u8> {
        let x = x.trim();
        if x.is_empty() || x.len() > 2 || !x.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        x.parse::<u8>().ok().filter(|v| *v <= max)
    };
    Ok(TimeOfDay {
        hour: field(h, 23).ok_or_else(bad)?,
        minute: field(m, 59).ok_or_else(bad)?,
    })
}

/// `durable_sync`: `fsync`, `syncfs` or `journal`, case-insensitive.
pub fn parse_durable_sync(s: &str) -> Result<DurableSync, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "fsync" => Ok(DurableSync::Fsync),
        "syncfs" => Ok(DurableSync::Syncfs),
        "journal" => Ok(DurableSync::Journal),
        _ => Err(format!("{s:?} is not fsync, syncfs or journal")),
    }
}

/// `log_level` names, case-insensitive (`err`/`warning` accepted too).
pub fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "emerg" => LogLevel::Emerg,
        "alert" => LogLevel::Alert,
        "crit" => LogLevel::Crit,
        "error" | "err" => LogLevel::Error,
        "warn" | "warning" => LogLevel::Warn,
        "notice" => LogLevel::Notice,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        _ => {
            return Err(format!(
                "{s:?} is not a log level (emerg, alert, crit, error, warn, notice, info, debug)"
            ))
        }
    })
}

/// A valid group name: 1..16 of `[A-Za-z0-9]`.
pub fn is_valid_group_name(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A host list with optional port: `host`, `host:port`, `ip1,ip2:port`,
/// `[v6]:port`, `[v6a,v6b]:port`, bare IPv6 (`fe80::1`, no port), or bare
/// IPv6 with port split at the last colon when the rest is an IPv6 address.
/// Returns the hosts (1 or 2) and the port if given.
pub fn parse_hosts_port(s: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let t = s.trim();
    let port_of = |p: &str| -> Result<u16, String> {
        match parse_int::<u16>(p) {
            Ok(0) | Err(_) => Err(format!("{s:?}: invalid port {p:?}")),
            Ok(v) => Ok(v),
        }
    };
    let (hosts_part, port) = if let Some(rest) = t.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']'"))?;
        let port = match after {
            "" => None,
            a => {
                Some(port_of(a.strip_prefix(':').ok_or_else(|| {
                    format!("{s:?}: expected ':port' after ']'")
                })?)?)
            }
        };
        (inner, port)
    } else if t.parse::<Ipv6Addr>().is_ok() {
        (t, None)
    } else if let Some((h, p)) = t.rsplit_once(':') {
        if h.contains(':') && h.split(',').any(|x| x.trim().parse::<Ipv6Addr>().is_err()) {
            return Err(format!(
                "{s:?}: put IPv6 addresses in brackets: [addr]:port"
            ));
        }
        (h, Some(port_of(p)?))
    } else {
        (t, None)
    };
    let hosts: Vec<String> = hosts_part
        .split(',')
        .map(|h| h.trim().to_string())
        .collect();
    if hosts.len() > 2 {
        return Err(format!("{s:?}: at most two addresses"));
    }
    for h in &hosts {
        check_host(h).map_err(|e| format!("{s:?}: {e}"))?;
    }
    Ok((hosts, port))
}

/// A host name or IP address (no brackets).
pub fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("empty host".into());
    }
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid host {h:?}"))
    }
}

/// `tracker_server` style `host:port` (port defaults to `default_port`).
/// With dual addresses the first is kept; the second is returned too.
pub fn parse_host_port(s: &str, default_port: u16) -> Result<(HostPort, Option<String>), String> {
    let (mut hosts, port) = parse_hosts_port(s)?;
    let second = if hosts.len() > 1 { hosts.pop() } else { None };
    let host = hosts.pop().unwrap_or_default();
    Ok((
        HostPort {
            host,
            port: port.unwrap_or(default_port),
        },
        second,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        for t in ["true", "TRUE", "Yes", "on", "1", " 1 "] {
            assert!(parse_bool(t), "{t}");
        }
        for f in ["false", "0", "no", "off", "", "2", "11", "truee", "enabled"] {
            assert!(!parse_bool(f), "{f}");
        }
        assert!(is_bool_word("Off") && !is_bool_word("enabled"));
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int::<u16>("23000"), Ok(23000));
        assert_eq!(parse_int::<i64>("-5"), Ok(-5));
        assert_eq!(
            parse_int::<u16>("abc").unwrap_err(),
            "\"abc\" is not a number"
        );
        assert!(parse_int::<u16>("70000")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_int::<u32>("-1").is_err());
        assert!(parse_int::<u32>("1.5").is_err());
        assert!(parse_int::<u32>("").is_err());
        assert!(parse_int::<u32>("-").is_err());
        assert!(parse_int::<u64>("99999999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("256MB"), Ok(256 << 20));
        assert_eq!(parse_bytes("4GB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("1 G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2t"), Ok(2 << 40));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("100b"), Ok(100));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("-1").unwrap_err().contains("negative"));
        assert!(parse_bytes("1.5GB").unwrap_err().contains("fraction"));
        assert!(parse_bytes("GB").is_err());
        assert!(parse_bytes("10X").is_err());
        assert!(parse_bytes("10KBB").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(parse_reserved("10%"), Ok(ReservedSpace::Ratio(0.10)));
        assert_eq!(parse_reserved("20.5%"), Ok(ReservedSpace::Ratio(0.205)));
        assert_eq!(parse_reserved("1G"), Ok(ReservedSpace::Bytes(1 << 30)));
        for bad in [
            "0%", "100%", "150%", "-5%", "%", "a%", "1.2.3%", "NaN%", "inf%",
        ] {
            assert!(parse_reserved(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("00:00"), Ok(TimeOfDay { hour: 0, minute: 0 }));
        assert_eq!(
            parse_time("23:59"),
            Ok(TimeOfDay {
                hour: 23,
                minute: 59
            })
        );
        assert_eq!(parse_time("2:05"), Ok(TimeOfDay { hour: 2, minute: 5 }));
        for bad in ["24:00", "12:60", "1200", "", ":", "a:b", "-1:00", "001:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse_log_level("INFO"), Ok(LogLevel::Info));
        assert_eq!(parse_log_level("err"), Ok(LogLevel::Error));
        assert_eq!(parse_log_level("Debug"), Ok(LogLevel::Debug));
        assert!(parse_log_level("verbose").is_err());
    }

    #[test]
    fn group_names() {
        assert!(is_valid_group_name("group1"));
        assert!(is_valid_group_name("G"));
        assert!(is_valid_group_name("abcdefghijklmnop"));
        assert!(!is_valid_group_name("abcdefghijklmnopq"));
        assert!(!is_valid_group_name(""));
        assert!(!is_valid_group_name("group-1"));
    }

    #[test]
    fn host_ports() {
        let hp = |s| parse_host_port(s, 22122);
        assert_eq!(
            hp("192.168.11.80:22122").unwrap().0.to_string(),
            "192.168.11.80:22122"
        );
        assert_eq!(hp("tracker.local").unwrap().0.port, 22122);
        let (h, second) = hp("10.0.0.1,192.168.0.1:22123").unwrap();
        assert_eq!(
            (h.host.as_str(), h.port, second.as_deref()),
            ("10.0.0.1", 22123, Some("192.168.0.1"))
        );
        let (h, _) = hp("[::1]:22122").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", 22122));
        assert_eq!(h.to_string(), "[::1]:22122");
        let (h, second) = hp("[fe80::1,fe80::2]:1").unwrap();
        assert_eq!(
            (h.host.as_str(), second.as_deref()),
            ("fe80::1", Some("fe80::2"))
        );
        assert_eq!(hp("fe80::1").unwrap().0.host, "fe80::1");
        // A whole valid IPv6 address has no port; otherwise split at the last ':'.
        assert_eq!(hp("fe80::1:9").unwrap().0.host, "fe80::1:9");
        let (h, _) = hp("::1:22123").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", 22123));
        for bad in [
            "h:abc",
            "h:0",
            "h:70000",
            "[::1",
            "[::1]x",
            "a,b,c:1",
            "",
            "bad host:1",
            "a b",
        ] {
            assert!(hp(bad).is_err(), "{bad}");
        }
    }
}

//! `allow_hosts` (CONFIG.md §1): who may connect to a daemon.
//!
//! Forms: `*`, an IP, a host name (resolved once at load; unresolvable names
//! are skipped with a warning), CIDR `10.0.0.0/8` or `fd00::/8`, a numeric
//! range `10.0.1.[1-15,20]`, and a name range `host[01-08,20-25].domain`.
//! Several lines add up; no line at all, or `*`, allows everyone.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};

/// Cap on what one bracket range may expand to (a typo must not eat memory).
const MAX_EXPANSION: usize = 65_536;

/// Who may connect. `Default` allows everyone (no `allow_hosts` line).
#[derive(Debug, Clone, PartialEq)]
pub struct AllowHosts {
    /// `*` given, or no rule at all.
    pub allow_all: bool,
    ips: BTreeSet<IpAddr>,
    nets: Vec<(IpAddr, u8)>,
}

impl Default for AllowHosts {
    fn default() -> Self {
        Self::allow_all()
    }
}

/// Resolves a host name to addresses (swappable so tests need no DNS).
pub type Resolver<'a> = dyn Fn(&str) -> io::Result<Vec<IpAddr>> + 'a;

static RESOLVE_NAMES: AtomicBool = AtomicBool::new(true);

/// Turns host-name resolution in the typed loaders on or off (process-wide).
/// Fuzzers and tests feeding arbitrary text turn it off so that an
/// `allow_hosts = somename` line never causes a DNS query; names are then
/// skipped with a warning, like unresolvable ones.
pub fn set_resolve_names(enabled: bool) {
    RESOLVE_NAMES.store(enabled, Ordering::Relaxed);
}

/// The system resolver (`getaddrinfo`), unless turned off with
/// [`set_resolve_names`].
pub fn system_resolver(name: &str) -> io::Result<Vec<IpAddr>> {
    if !RESOLVE_NAMES.load(Ordering::Relaxed) {
        return Err(io::Error::other("name resolution is turned off"));
    }
    Ok((name, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
}

impl AllowHosts {
    /// Everyone may connect.
    pub fn allow_all() -> AllowHosts {
        AllowHosts {
            allow_all: true,
            ips: BTreeSet::new(),
            nets: Vec::new(),
        }
    }

    /// Nobody may connect (until rules are [`add`](Self::add)ed).
    pub fn deny_all() -> AllowHosts {
        AllowHosts {
            allow_all: false,
            ips: BTreeSet::new(),
            nets: Vec::new(),
        }
    }

    /// Parses every `allow_hosts` value; warnings go to `tracing`.
    pub fn parse(values: &[String]) -> Result<AllowHosts, String> {
        let (a, warnings) = Self::parse_with(values, &system_resolver)?;
        for w in warnings {
            tracing::warn!("allow_hosts: {w}");
        }
        Ok(a)
    }

    /// Parses every value with `resolve` for host names; also returns the
    /// warnings (unresolvable names).
    pub fn parse_with(
        values: &[String],
        resolve: &Resolver<'_>,
    ) -> Result<(AllowHosts, Vec<String>), String> {
        let mut a = AllowHosts {
            allow_all: values.is_empty(),
            ips: BTreeSet::new(),
            nets: Vec::new(),
        };
        let mut warnings = Vec::new();
        for v in values {
            a.add(v, resolve, &mut warnings)?;
        }
        Ok((a, warnings))
    }

    /// Adds one `allow_hosts` value.
    pub fn add(
        &mut self,
        value: &str,
        resolve: &Resolver<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        let v = value.trim();
        if v.is_empty() {
            return Err("empty allow_hosts value".into());
        }
        if v == "*" {
            self.allow_all = true;
            return Ok(());
        }
        if let Some((addr, bits)) = v.split_once('/') {
            let ip: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| format!("{v:?}: {addr:?} is not an IP address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .trim()
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{v:?}: prefix length must be 0..{max}"))?;
            let ip = ip.to_canonical();
            self.nets.push((mask(ip, bits), bits));
            return Ok(());
        }
        // A bracketed IPv6 address, e.g. [::1].
        if let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if let Ok(ip) = inner.parse::<IpAddr>() {
                self.ips.insert(ip.to_canonical());
                return Ok(());
            }
        }
        if let Ok(ip) = v.parse::<IpAddr>() {
            self.ips.insert(ip.to_canonical());
            return Ok(());
        }
        let names = expand(v)?;
        let numeric = v
            .bytes()
            .all(|b| b.is_ascii_digit() || b"[],-.".contains(&b));
        for name in names {
            if let Ok(ip) = name.parse::<IpAddr>() {
                self.ips.insert(ip.to_canonical());
                continue;
            }
            if numeric {
                return Err(format!("{v:?}: {name:?} is not an IP address"));
            }
            crate::value::check_host(&name).map_err(|e| format!("{v:?}: {e}"))?;
            match resolve(&name) {
                Ok(ips) if !ips.is_empty() => {
                    self.ips.extend(ips.into_iter().map(|ip| ip.to_canonical()));
                }
                Ok(_) => warnings.push(format!("{name}: no address; skipped")),
                Err(e) => warnings.push(format!("cannot resolve {name}: {e}; skipped")),
            }
        }
        Ok(())
    }

    /// Whether everyone may connect.
    pub fn is_allow_all(&self) -> bool {
        self.allow_all
    }

    /// Whether `ip` may connect (IPv4-mapped IPv6 counts as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allow_all {
            return true;
        }
        let ip = ip.to_canonical();
        self.ips.contains(&ip)
            || self
                .nets
                .iter()
                .any(|(net, bits)| net.is_ipv4() == ip.is_ipv4() && mask(ip, *bits) == *net)
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Expands one `prefix[a-b,c]suffix` group (at most one); no bracket gives
/// the value itself. A zero-padded start (`01`) pads to its width.
fn expand(v: &str) -> Result<Vec<String>, String> {
    let Some(open) = v.find('[') else {
        return Ok(vec![v.to_string()]);
    };
    let close = v[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("{v:?}: missing ']'"))?;
    let (prefix, inner, suffix) = (&v[..open], &v[open + 1..close], &v[close + 1..]);
    if suffix.contains(['[', ']']) || inner.contains('[') {
        return Err(format!("{v:?}: only one [range] is supported"));
    }
    let mut out = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (a.trim(), b.trim());
        let num = |x: &str| -> Result<u32, String> {
            if x.is_empty() || x.len() > 9 || !x.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("{v:?}: {part:?} is not a number range"));
            }
            x.parse().map_err(|_| format!("{v:?}: bad number {x:?}"))
        };
        let (start, end) = (num(a)?, num(b)?);
        if start > end {
            return Err(format!("{v:?}: range {part:?} goes backwards"));
        }
        let width = if a.len() > 1 && a.starts_with('0') {
            a.len()
        } else {
            0
        };
        if out.len() + (end - start) as usize >= MAX_EXPANSION {
            return Err(format!("{v:?}: range expands to too many hosts"));
        }
        for n in start..=end {
            out.push(format!("{prefix}{n:0width$}{suffix}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dns(name: &str) -> io::Result<Vec<IpAddr>> {
        match name {
            "web01.example" => Ok(vec!["192.0.2.1".parse().unwrap()]),
            "web02.example" => Ok(vec!["192.0.2.2".parse().unwrap()]),
            "web10.example" => Ok(vec!["192.0.2.10".parse().unwrap()]),
            "six.example" => Ok(vec!["2001:db8::6".parse().unwrap()]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "unknown host")),
        }
    }

    fn parse(v: &[&str]) -> (AllowHosts, Vec<String>) {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        AllowHosts::parse_with(&v, &no_dns).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn expansion() {
        assert_eq!(expand("h[01-03].d").unwrap(), ["h01.d", "h02.d", "h03.d"]);
        assert_eq!(
            expand("1.2.3.[1-2,9]").unwrap(),
            ["1.2.3.1", "1.2.3.2", "1.2.3.9"]
        );
        assert!(expand("a[1-2]b[3]").is_err());
        assert!(expand("a[5-1]").is_err());
        assert!(expand("a[x]").is_err());
        assert!(expand("a[1-999999999]").is_err());
        assert!(expand("a[1").is_err());
    }

    #[test]
    fn empty_and_star() {
        assert!(parse(&[]).0.allows(ip("8.8.8.8")));
        assert!(parse(&["10.0.0.1", "*"]).0.allows(ip("8.8.8.8")));
        assert!(AllowHosts::default().allows(ip("::1")));
    }

    #[test]
    fn ips_cidrs_ranges() {
        let (a, w) = parse(&[
            "127.0.0.1",
            "10.0.0.0/8",
            "172.16.1.[1-15,20]",
            "fd00::/16",
            "[2001:db8::1]",
            "web[01-02,10].example",
            "six.example",
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert!(!a.allow_all);
        for ok in [
            "127.0.0.1",
            "10.255.1.2",
            "172.16.1.1",
            "172.16.1.15",
            "172.16.1.20",
            "fd00:1::5",
            "2001:db8::1",
            "192.0.2.1",
            "192.0.2.10",
            "2001:db8::6",
            "::ffff:10.1.1.1",
        ] {
            assert!(a.allows(ip(ok)), "{ok}");
        }
        for no in [
            "127.0.0.2",
            "11.0.0.1",
            "172.16.1.16",
            "172.16.1.0",
            "fd01::1",
            "2001:db8::2",
            "192.0.2.3",
        ] {
            assert!(!a.allows(ip(no)), "{no}");
        }
    }

    #[test]
    fn unresolvable_warns() {
        let (a, w) = parse(&["nosuch.example", "10.0.0.1"]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("nosuch.example"));
        assert!(a.allows(ip("10.0.0.1")));
        assert!(!a.allows(ip("10.0.0.2")));
    }

    #[test]
    fn errors() {
        let err = |s: &str| AllowHosts::parse_with(&[s.to_string()], &no_dns).unwrap_err();
        err("10.0.0.0/33");
        err("::/129");
        err("abc/8");
        err("10.0.1.[1-300]");
        err("bad host!");
        err("");
    }

    #[test]
    fn zero_prefix_allows_family() {
        let (a, _) = parse(&["0.0.0.0/0"]);
        assert!(a.allows(ip("1.2.3.4")));
        assert!(!a.allows(ip("2001:db8::1")));
    }
}

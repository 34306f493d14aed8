//! Per-group server lists with round robin and nginx-style passive health:
//! `max_fails` failures within `fail_timeout` take a server out of rotation
//! for `fail_timeout`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Server {
    addr: SocketAddr,
    fails: u32,
    first_fail: Option<Instant>,
    down_until: Option<Instant>,
}

impl Server {
    fn new(addr: SocketAddr) -> Server {
        Server {
            addr,
            fails: 0,
            first_fail: None,
            down_until: None,
        }
    }

    fn is_up(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|t| now >= t)
    }
}

#[derive(Debug, Default)]
struct Group {
    servers: Vec<Server>,
    next: usize,
}

/// The gateway's view of every group.
#[derive(Debug)]
pub struct Upstreams {
    groups: Mutex<HashMap<String, Group>>,
    max_fails: u32,
    fail_timeout: Duration,
}

impl Upstreams {
    pub fn new(max_fails: u32, fail_timeout: Duration) -> Upstreams {
        Upstreams {
            groups: Mutex::new(HashMap::new()),
            max_fails,
            fail_timeout,
        }
    }

    /// Replaces the membership, keeping the health state of servers that
    /// stay. Groups not listed are dropped.
    pub fn set(&self, view: HashMap<String, Vec<SocketAddr>>) {
        let mut groups = self.groups.lock().expect("upstream lock");
        let mut next = HashMap::with_capacity(view.len());
        for (name, addrs) in view {
            let old = groups.remove(&name).unwrap_or_default();
            let servers = addrs
                .into_iter()
                .map(|a| {
                    old.servers
                        .iter()
                        .find(|s| s.addr == a)
                        .cloned()
                        .unwrap_or_else(|| Server::new(a))
                })
                .collect();
            next.insert(
                name,
                Group {
                    servers,
                    next: old.next,
                },
            );
        }
        *groups = next;
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups
            .lock()
            .expect("upstream lock")
            .contains_key(group)
    }

    /// The servers to try for one request, in order: the healthy ones
    /// starting at the round-robin position, then the ones marked down as a
    /// last resort (better a slow answer than none).
    pub fn plan(&self, group: &str) -> Vec<SocketAddr> {
        let now = Instant::now();
        let mut groups = self.groups.lock().expect("upstream lock");
        let Some(g) = groups.get_mut(group) else {
            return Vec::new();
        };
        let n = g.servers.len();
        if n == 0 {
            return Vec::new();
        }
        let start = g.next % n;
        g.next = g.next.wrapping_add(1);
        let rotated = (0..n).map(|i| &g.servers[(start + i) % n]);
        let (up, down): (Vec<_>, Vec<_>) = rotated.partition(|s| s.is_up(now));
        up.into_iter().chain(down).map(|s| s.addr).collect()
    }

    pub fn report_failure(&self, addr: SocketAddr) {
        let now = Instant::now();
        let mut groups = self.groups.lock().expect("upstream lock");
        for s in groups.values_mut().flat_map(|g| g.servers.iter_mut()) {
            if s.addr != addr {
                continue;
            }
            if s.first_fail
                .is_none_or(|t| now.duration_since(t) > self.fail_timeout)
            {
                s.first_fail = Some(now);
                s.fails = 0;
            }
            s.fails += 1;
            if self.max_fails > 0 && s.fails >= self.max_fails {
                tracing::warn!(server = %addr, fails = s.fails, "upstream marked down");
                s.down_until = Some(now + self.fail_timeout);
                s.fails = 0;
                s.first_fail = None;
            }
        }
    }

    pub fn report_success(&self, addr: SocketAddr) {
        let mut groups = self.groups.lock().expect("upstream lock");
        for s in groups.values_mut().flat_map(|g| g.servers.iter_mut()) {
            if s.addr == addr {
                s.fails = 0;
                s.first_fail = None;
                s.down_until = None;
            }
        }
    }

    /// Each group: (name, servers, servers out of rotation now), by name.
    pub fn snapshot(&self) -> Vec<(String, usize, usize)> {
        let now = Instant::now();
        let groups = self.groups.lock().expect("upstream lock");
        let mut v: Vec<_> = groups
            .iter()
            .map(|(name, g)| {
                let down = g.servers.iter().filter(|s| !s.is_up(now)).count();
                (name.clone(), g.servers.len(), down)
            })
            .collect();
        v.sort();
        v
    }

    /// Whether `addr` is currently out of rotation.
    pub fn is_down(&self, addr: SocketAddr) -> bool {
        let now = Instant::now();
        let groups = self.groups.lock().expect("upstream lock");
        groups
            .values()
            .flat_map(|g| g.servers.iter())
            .any(|s| s.addr == addr && !s.is_up(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn round_robin_and_marking_down() {
        let u = Upstreams::new(2, Duration::from_secs(30));
        u.set(HashMap::from([("g1".to_owned(), vec![a(1), a(2)])]));
        assert_eq!(u.plan("g1"), vec![a(1), a(2)]);
        assert_eq!(u.plan("g1"), vec![a(2), a(1)]);
        assert!(u.plan("g2").is_empty());
        u.report_failure(a(1));
        assert!(!u.is_down(a(1)));
        u.report_failure(a(1));
        assert!(u.is_down(a(1)));
        // Down servers come last whatever the rotation.
        assert_eq!(u.plan("g1"), vec![a(2), a(1)]);
        assert_eq!(u.plan("g1"), vec![a(2), a(1)]);
        // A refresh keeps the state of servers that stay.
        u.set(HashMap::from([("g1".to_owned(), vec![a(1), a(2), a(3)])]));
        assert!(u.is_down(a(1)));
        u.report_success(a(1));
        assert!(!u.is_down(a(1)));
    }

    #[test]
    fn failures_expire() {
        let u = Upstreams::new(2, Duration::from_millis(20));
        u.set(HashMap::from([("g".to_owned(), vec![a(1)])]));
        u.report_failure(a(1));
        std::thread::sleep(Duration::from_millis(40));
        u.report_failure(a(1));
        assert!(!u.is_down(a(1)), "the first failure is outside the window");
        u.report_failure(a(1));
        assert!(u.is_down(a(1)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!u.is_down(a(1)), "back after fail_timeout");
    }
}

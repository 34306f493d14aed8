//! Write quorum (`write_quorum`, ours): an upload is acknowledged only once
//! that many servers of the group, this one included, hold the new file.
//!
//! Each sync worker publishes how far its peer has acknowledged our binlog
//! ([`Acks::update`]), and which records it passed without the peer taking
//! them ([`Acks::skipped`]: refused too often); an upload waits until enough
//! peers are past its record's end and did not skip it ([`Quorum::wait`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// A binlog position: file index, byte offset.
pub type Pos = (u32, u64);

/// Skipped records remembered per peer. An upload waits seconds, and a
/// peer skips a record only after refusing it several times, so the last
/// ones are all a waiting upload can be.
const SKIPPED_KEPT: usize = 4096;

/// How far each peer has acknowledged our binlog.
#[derive(Debug, Default)]
pub struct Acks {
    peers: Mutex<HashMap<String, PeerAcks>>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct PeerAcks {
    pos: Pos,
    /// End positions of records passed without the peer taking them.
    skipped: VecDeque<Pos>,
}

impl PeerAcks {
    fn holds(&self, target: Pos) -> bool {
        self.pos >= target && !self.skipped.contains(&target)
    }
}

impl Acks {
    /// `peer` holds every change before `pos`.
    pub fn update(&self, peer: &str, pos: Pos) {
        self.advance(peer, pos, false);
    }

    /// `peer` passed the record that ends at `pos` without taking it: an
    /// upload waiting for that record does not count it.
    pub fn skipped(&self, peer: &str, pos: Pos) {
        self.advance(peer, pos, true);
    }

    fn advance(&self, peer: &str, pos: Pos, skipped: bool) {
        let mut m = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        // Called for every record sent: no allocation once the peer is known.
        let e = match m.get_mut(peer) {
            Some(e) => e,
            None => m.entry(peer.to_owned()).or_default(),
        };
        if skipped {
            if e.skipped.len() == SKIPPED_KEPT {
                e.skipped.pop_front();
            }
            e.skipped.push_back(pos);
        }
        if pos <= e.pos {
            return;
        }
        e.pos = pos;
        drop(m);
        self.changed.notify_waiters();
    }

    /// How many peers hold the record that ends at `target` (checked on
    /// every wake: no allocation).
    pub fn count_past(&self, target: Pos) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| p.holds(target))
            .count()
    }

    /// Peers that hold the record that ends at `target`.
    pub fn past(&self, target: Pos) -> Vec<String> {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, p)| p.holds(target))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The upload side: how many servers, how long to wait.
#[derive(Debug)]
pub struct Quorum {
    pub acks: std::sync::Arc<Acks>,
    /// Servers that must hold a new file, this one included (≥ 2 here).
    pub servers: usize,
    pub timeout: Duration,
}

impl Quorum {
    /// Waits until `servers - 1` peers hold the record that ends at
    /// `target`; the peers that did, as the error, when the time runs out.
    pub async fn wait(&self, target: Pos) -> Result<(), Vec<String>> {
        let need = self.servers.saturating_sub(1);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            // Registered before the check: an update in between still wakes.
            let changed = self.acks.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.acks.count_past(target) >= need {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let past = self.acks.past(target);
                return if past.len() >= need {
                    Ok(())
                } else {
                    Err(past)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn an_upload_waits_for_enough_peers() {
        let acks = Arc::new(Acks::default());
        let q = Quorum {
            acks: acks.clone(),
            servers: 3,
            timeout: Duration::from_secs(5),
        };
        acks.update("b", (0, 100));
        let a2 = acks.clone();
        let waiter = tokio::spawn(async move { q.wait((0, 150)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "one peer short of the record");
        a2.update("b", (0, 150));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "still one peer short");
        a2.update("c", (1, 0));
        assert_eq!(waiter.await.unwrap(), Ok(()));
        // Positions never go back.
        acks.update("b", (0, 10));
        assert_eq!(acks.past((0, 150)).len(), 2);
    }

    #[tokio::test]
    async fn a_peer_that_skipped_the_record_does_not_count() {
        let acks = Arc::new(Acks::default());
        let q = Quorum {
            acks: acks.clone(),
            servers: 2,
            timeout: Duration::from_millis(100),
        };
        // b refused the record ending at 150, took the one ending at 200.
        acks.skipped("b", (0, 150));
        acks.update("b", (0, 200));
        assert_eq!(q.wait((0, 150)).await, Err(vec![]));
        assert_eq!(q.wait((0, 200)).await, Ok(()));
        assert_eq!(q.wait((0, 100)).await, Ok(()));
        // Only the last skips are kept.
        for k in 0..SKIPPED_KEPT as u64 {
            acks.skipped("b", (1, k));
        }
        assert_eq!(acks.count_past((0, 150)), 1);
        assert_eq!(acks.count_past((1, 5)), 0);
    }

    #[tokio::test]
    async fn the_wait_ends_at_the_timeout_naming_who_had_it() {
        let acks = Arc::new(Acks::default());
        acks.update("b", (0, 500));
        let q = Quorum {
            acks,
            servers: 3,
            timeout: Duration::from_millis(100),
        };
        assert_eq!(q.wait((0, 400)).await, Err(vec!["b".to_owned()]));
    }
}

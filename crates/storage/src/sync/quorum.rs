//! Write quorum (`write_quorum`, ours): an upload is acknowledged only once
//! that many servers of the group, this one included, hold the new file.
//!
//! Each sync worker publishes how far its peer has acknowledged our binlog
//! ([`Acks::update`]); an upload waits until enough peers are past its
//! record's end ([`Quorum::wait`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// A binlog position: file index, byte offset.
pub type Pos = (u32, u64);

/// How far each peer has acknowledged our binlog.
#[derive(Debug, Default)]
pub struct Acks {
    pos: Mutex<HashMap<String, Pos>>,
    changed: Notify,
}

impl Acks {
    /// `peer` holds every change before `pos`.
    pub fn update(&self, peer: &str, pos: Pos) {
        let mut m = self.pos.lock().unwrap_or_else(|e| e.into_inner());
        // Called for every record sent: no allocation once the peer is known.
        match m.get_mut(peer) {
            Some(e) if pos > *e => *e = pos,
            Some(_) => return,
            None => {
                m.insert(peer.to_owned(), pos);
            }
        }
        drop(m);
        self.changed.notify_waiters();
    }

    /// How many peers are past `target` (checked on every wake: no
    /// allocation).
    pub fn count_past(&self, target: Pos) -> usize {
        self.pos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| **p >= target)
            .count()
    }

    /// Peers past `target`.
    pub fn past(&self, target: Pos) -> Vec<String> {
        self.pos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, p)| **p >= target)
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
    /// Waits until `servers - 1` peers are past `target`; the peers that
    /// were, as the error, when the time runs out.
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

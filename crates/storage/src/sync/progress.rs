//! Incoming sync progress, reported to the trackers with SYNC_REPORT (89):
//! for each peer, the source timestamp of the last record received from
//! it. The trackers use it to route downloads only to servers that hold a
//! file (PROTOCOL.md §8.4).

use std::collections::BTreeMap;
use std::sync::Mutex;

use fdfs_proto::server::SyncReport;

#[derive(Debug, Default)]
struct Inner {
    last: BTreeMap<String, u32>,
    changed: bool,
}

/// Shared by the receiving connections and the tracker reporter.
#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<Inner>,
}

impl Progress {
    /// A record stamped `ts` arrived from `peer` (its id, or its IP when it
    /// never sent REPORT_SERVER_ID).
    pub fn received(&self, peer: &str, ts: u32) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.last.entry(peer.to_owned()).or_insert(0);
        if ts > *e {
            *e = ts;
            g.changed = true;
        }
    }

    /// A peer's IP (its id) changed: what it sent counts for the new id.
    pub fn rename(&self, old: &str, new: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ts) = g.last.remove(old) {
            let e = g.last.entry(new.to_owned()).or_insert(0);
            *e = (*e).max(ts);
            g.changed = true;
        }
    }

    /// The last timestamp received from `peer`.
    pub fn last(&self, peer: &str) -> Option<u32> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.last.get(peer).copied()
    }

    /// The SYNC_REPORT to send if anything changed since the last one: an
    /// entry for this server itself with 0 first (as upstream sends it),
    /// then one per peer.
    pub fn take_report(&self, my_id: &str) -> Option<SyncReport> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !g.changed {
            return None;
        }
        g.changed = false;
        let mut entries = vec![(my_id.to_owned(), 0)];
        entries.extend(
            g.last
                .iter()
                .filter(|(p, _)| p.as_str() != my_id)
                .map(|(p, t)| (p.clone(), *t)),
        );
        Some(SyncReport { entries })
    }

    /// Makes the next [`Progress::take_report`] send again (after a failed
    /// send).
    pub fn mark_changed(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).changed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_self_first_and_only_when_changed() {
        let p = Progress::default();
        assert!(p.take_report("127.0.0.11").is_none());
        p.received("127.0.0.12", 1795669655);
        p.received("127.0.0.12", 1795669600); // older: no change
        let r = p.take_report("127.0.0.11").unwrap();
        assert_eq!(
            r.entries,
            vec![
                ("127.0.0.11".to_owned(), 0),
                ("127.0.0.12".to_owned(), 1795669655)
            ]
        );
        let mut body = Vec::new();
        r.encode(&mut body);
        assert_eq!(body.len(), 40, "2 x 20 bytes as in the golden capture");
        assert!(p.take_report("127.0.0.11").is_none());
        p.received("127.0.0.12", 1795669600);
        assert!(p.take_report("127.0.0.11").is_none());
        p.mark_changed();
        assert!(p.take_report("127.0.0.11").is_some());
        assert_eq!(p.last("127.0.0.12"), Some(1795669655));
    }

    #[test]
    fn golden_sync_report_body_matches() {
        // storage_heartbeat_sync_report: 127.0.0.11 reports itself (0) and
        // its peer 127.0.0.12.
        let text =
            include_str!("../../../../testdata/golden/wire/storage_heartbeat_sync_report.jsonl");
        let line = text
            .lines()
            .find(|l| l.contains("\"cmd\": 89") || l.contains("\"cmd\":89"))
            .expect("a SYNC_REPORT in the capture");
        let hex = line
            .split("\"body_hex\":")
            .nth(1)
            .unwrap()
            .trim_start()
            .trim_start_matches('"');
        let hex = &hex[..hex.find('"').unwrap()];
        let body: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let golden = SyncReport::decode(&body).unwrap();
        assert_eq!(golden.entries.len(), 2);
        let (me, zero) = &golden.entries[0];
        assert_eq!(*zero, 0);
        let (peer, ts) = golden.entries[1].clone();
        let p = Progress::default();
        p.received(&peer, ts);
        let ours = p.take_report(me).unwrap();
        let mut out = Vec::new();
        ours.encode(&mut out);
        assert_eq!(out, body);
    }
}

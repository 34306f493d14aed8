//! Which binlog records a sync worker forwards to a peer (PROTOCOL.md §6.5).
//!
//! * Steady state: only upper-case (source) records; replica records were
//!   applied here because a peer sent them, and that peer forwards them to
//!   everybody itself — forwarding them again would bounce changes around.
//! * Full sync of a new server, when this server is its designated source:
//!   every upper-case record, plus the replica records `c d u l r` stamped
//!   at or before the new server's `until_timestamp` (files this server got
//!   from peers before the new server appeared). Replica `a m t` are never
//!   forwarded: a forwarded `c` reads the whole current file.
//! * A non-source towards a new server skips its own records stamped
//!   before `until_timestamp`: the source has them and sends them. The
//!   last [`CUTOFF_OVERLAP`] seconds before the cut-off are sent anyway,
//!   because the source may not have received them yet when it replays
//!   its binlog; the receiver recognises what it already has, so the
//!   overlap costs some transfer and never a duplicate.

use fdfs_proto::binlog::{BinlogOp, BinlogRecord};

/// Seconds before a new server's cut-off that a non-source still sends.
pub const CUTOFF_OVERLAP: i64 = 60;

/// The filtering state of one peer, taken from its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// I am the peer's full-sync source and the full sync is not done.
    pub full_sync: bool,
    /// I am the peer's full-sync source (done or not).
    pub is_source: bool,
    /// The peer's full-sync cut-off, 0 for none.
    pub until: i64,
}

impl Rules {
    pub fn from_mark(m: &super::mark::Mark) -> Rules {
        Rules {
            full_sync: m.need_sync_old && !m.sync_old_done,
            is_source: m.need_sync_old,
            until: m.until_timestamp,
        }
    }

    /// True if `rec` must be sent to the peer.
    pub fn wants(&self, rec: &BinlogRecord) -> bool {
        let ts = i64::from(rec.timestamp);
        if self.full_sync {
            if rec.is_source {
                return true;
            }
            return ts <= self.until
                && matches!(
                    rec.op,
                    BinlogOp::Create
                        | BinlogOp::Delete
                        | BinlogOp::Update
                        | BinlogOp::Link { .. }
                        | BinlogOp::Rename { .. }
                );
        }
        if !rec.is_source {
            return false;
        }
        // A non-source leaves the records before the cut-off to the source.
        self.is_source || self.until <= 0 || ts > self.until - CUTOFF_OVERLAP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> BinlogRecord {
        BinlogRecord::decode(line).unwrap()
    }

    const N: &str = "M00/07/A7/fwAADGsHvp2Ea4IPAAAAAOA9MXE070.txt";

    fn lines() -> Vec<(String, i64)> {
        vec![
            (format!("100 C {N}"), 100),
            (format!("100 c {N}"), 100),
            (format!("100 d {N}"), 100),
            (format!("100 u {N}-m"), 100),
            (format!("100 a {N} 0 5"), 100),
            (format!("100 m {N} 0 5"), 100),
            (format!("100 t {N} 5 0"), 100),
            (format!("100 l {N}-x {N}"), 100),
            (format!("100 r {N} {N}"), 100),
            (format!("150 C {N}"), 150),
            (format!("300 c {N}"), 300),
            (format!("300 C {N}"), 300),
            (format!("300 A {N} 0 5"), 300),
        ]
    }

    fn sent(r: Rules) -> Vec<String> {
        lines()
            .into_iter()
            .filter(|(l, _)| r.wants(&rec(l)))
            .map(|(l, _)| l)
            .collect()
    }

    #[test]
    fn steady_state_forwards_only_source_records() {
        let r = Rules {
            full_sync: false,
            is_source: false,
            until: 0,
        };
        assert_eq!(
            sent(r),
            vec![
                format!("100 C {N}"),
                format!("150 C {N}"),
                format!("300 C {N}"),
                format!("300 A {N} 0 5")
            ]
        );
    }

    #[test]
    fn full_sync_source_adds_old_replica_records_but_never_a_m_t() {
        let r = Rules {
            full_sync: true,
            is_source: true,
            until: 200,
        };
        assert_eq!(
            sent(r),
            vec![
                format!("100 C {N}"),
                format!("100 c {N}"),
                format!("100 d {N}"),
                format!("100 u {N}-m"),
                format!("100 l {N}-x {N}"),
                format!("100 r {N} {N}"),
                format!("150 C {N}"),
                // Replica records after the cut-off are the other peers' job.
                format!("300 C {N}"),
                format!("300 A {N} 0 5"),
            ]
        );
        // Once done, the source is back to the steady rules, no cut-off.
        let done = Rules {
            full_sync: false,
            ..r
        };
        assert_eq!(
            sent(done),
            vec![
                format!("100 C {N}"),
                format!("150 C {N}"),
                format!("300 C {N}"),
                format!("300 A {N} 0 5")
            ]
        );
    }

    #[test]
    fn non_source_skips_to_the_cut_off() {
        let r = Rules {
            full_sync: false,
            is_source: false,
            until: 200,
        };
        // 100 is before the overlap (200 - 60); 150 is inside it.
        assert_eq!(
            sent(r),
            vec![
                format!("150 C {N}"),
                format!("300 C {N}"),
                format!("300 A {N} 0 5")
            ]
        );
    }

    #[test]
    fn rules_come_from_the_mark() {
        let m = super::super::mark::Mark {
            need_sync_old: true,
            sync_old_done: false,
            until_timestamp: 9,
            ..Default::default()
        };
        assert_eq!(
            Rules::from_mark(&m),
            Rules {
                full_sync: true,
                is_source: true,
                until: 9
            }
        );
    }
}

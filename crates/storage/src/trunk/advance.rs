//! Trunk files made ahead of demand (`trunk_create_file_advance`): at the
//! time base and every interval after it, the trunk server makes new trunk
//! files until its free trunk space reaches the threshold, so that a burst
//! of uploads finds them ready instead of waiting for one to be made.
//!
//! Each file is made the way an upload's new trunk file is (reserved space
//! check, preallocation, trunk binlog), one per hold of the trunk server's
//! lock, and the next is made only once the trackers know of it: slots of
//! a file are handed out only then anyway (the `Told` gate of
//! TRUNK_ALLOC_SPACE), and a round stops at the first refusal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fdfs_runtime::clock::unix_now;
use fdfs_runtime::Shutdown;
use tracing::{info, warn};

use super::{AdvanceParams, Trunk, TrunkError};

/// How often changed parameters (from a tracker session) are looked at
/// while waiting for the next run: a read of a lock, so often enough that
/// a schedule starts within a second of the trackers sending it.
const RECHECK: Duration = Duration::from_secs(1);

/// What ended a round.
enum Stop {
    /// The free trunk space reached the threshold.
    Enough,
    /// A new file was refused (no room): logged once per streak.
    Refused(String),
    /// Shutdown, the role lost, trackers away, or an error (logged).
    Other,
}

impl Trunk {
    /// Runs the schedule until `shutdown`. Rounds run only while trunk
    /// files are used, made ahead, and we are the trunk server.
    pub async fn make_ahead_on_schedule(self: Arc<Self>, shutdown: Shutdown) {
        // The schedule and its next run, taken afresh when it changes.
        let mut plan: Option<(AdvanceParams, i64)> = None;
        let mut refusal_logged = false;
        loop {
            let now = unix_now();
            plan = self.current_plan(plan, now);
            if let Some((a, _)) = plan.filter(|&(_, at)| now >= at) {
                plan = Some((a, a.next_run(now)));
                if self.state().serving.load(Ordering::SeqCst) {
                    match self.round(a.threshold, &shutdown).await {
                        Stop::Enough => refusal_logged = false,
                        Stop::Refused(why) if !refusal_logged => {
                            warn!("trunk: no trunk file made ahead of demand: {why}");
                            refusal_logged = true;
                        }
                        Stop::Refused(_) | Stop::Other => {}
                    }
                }
                continue;
            }
            let until_run = plan.map_or(RECHECK, |(_, at)| {
                Duration::from_secs(u64::try_from(at - now).unwrap_or(0))
            });
            tokio::select! {
                _ = tokio::time::sleep(until_run.min(RECHECK)) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// The schedule in force and its next run after `now` (kept while the
    /// parameters stay the same); `None` when files are not made ahead.
    fn current_plan(
        &self,
        plan: Option<(AdvanceParams, i64)>,
        now: i64,
    ) -> Option<(AdvanceParams, i64)> {
        let p = self.state().params();
        if !(p.enabled && p.advance.enabled) {
            return None;
        }
        match plan {
            Some((a, at)) if a == p.advance => Some((a, at)),
            _ => Some((p.advance, p.advance.next_run(now))),
        }
    }

    /// One run: new trunk files until the free trunk space reaches
    /// `threshold` bytes.
    async fn round(&self, threshold: u64, shutdown: &Shutdown) -> Stop {
        let mut made = Vec::new();
        let stop = loop {
            if shutdown.is_triggered() || !self.state().serving.load(Ordering::SeqCst) {
                break Stop::Other;
            }
            let info = match self.make_ahead(threshold).await {
                Ok(None) => break Stop::Enough,
                Ok(Some(info)) => info,
                Err(TrunkError::NoSpace(why)) => break Stop::Refused(why),
                Err(TrunkError::NotServer) => break Stop::Other,
                Err(e) => {
                    warn!("trunk: making a trunk file ahead of demand: {e}");
                    break Stop::Other;
                }
            };
            made.push(info.slot.trunk_id);
            // The reporters tell the trackers now, not at their next beat;
            // a file they cannot learn of is of no use yet.
            let id = info.slot.trunk_id;
            let within = self.conf.network_timeout.min(Duration::from_secs(5));
            let known = tokio::select! {
                k = self.state().told.wait_known(id, within) => k,
                _ = shutdown.wait() => false,
            };
            if !known && !shutdown.is_triggered() {
                warn!("trunk: no tracker has acknowledged trunk file {id} yet; no more are made ahead until the next run");
                break Stop::Other;
            }
        };
        if !made.is_empty() {
            info!(
                files = made.len(),
                trunk_ids = ?made,
                free_mb = self.state().free_mb.load(Ordering::Relaxed),
                threshold_mb = threshold / (1024 * 1024),
                "trunk: trunk files made ahead of demand"
            );
        }
        stop
    }
}

//! What a storage shows on its metrics port (`metrics_port`; served by
//! `fdfs_http::observe`): the counters `fdfs_monitor` shows, space per store
//! path, the binlog position, replication towards each peer (state, lag,
//! records sent), a disk recovery's progress and the process. `/status`
//! says the same in JSON.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fdfs_proto::server::status;
use fdfs_proto::tracker::StatBuff;
use fdfs_runtime::metrics::{process, Exposition};
use serde_json::json;

use crate::reporter::ReporterState;
use crate::store::stats::idx;
use crate::store::{now, Store};
use crate::sync::SyncService;

const MB: f64 = 1024.0 * 1024.0;

/// A running storage, as its metrics port shows it.
pub struct Observer {
    pub(crate) store: Arc<Store>,
    pub(crate) state: Arc<ReporterState>,
    pub(crate) sync: Arc<SyncService>,
    pub(crate) recovery: Arc<crate::recovery::Progress>,
    /// Unix seconds at start.
    pub(crate) started: u64,
    pub(crate) port: u16,
}

impl Observer {
    /// The servers of our group, ourselves included, as the trackers last
    /// listed them: (storage id, IP).
    pub fn group_members(&self) -> Vec<(String, String)> {
        self.state
            .group_servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| (s.id.clone(), s.ip.clone()))
            .collect()
    }

    /// The trackers' `storage_sync_file_max_delay`, once one has said it.
    pub fn sync_file_max_delay(&self) -> Option<std::time::Duration> {
        match self.state.sync_file_max_delay.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        }
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> String {
        let mut e = Exposition::new();
        let group = self.store.group().as_str();
        let id = self.state.my_id(&self.store);
        let st = self.state.my_status.load(Ordering::Relaxed);
        e.gauge(
            "fdfs_storage_info",
            "This storage server (always 1).",
            &[
                ("group", group),
                ("id", &id),
                ("version", fdfs_proto::common::VERSION),
            ],
            1.0,
        );
        e.gauge(
            "fdfs_storage_status",
            "Status the trackers last gave this server (7 = ACTIVE).",
            &[("status", status::name(st))],
            f64::from(st),
        );
        let snap = self.store.stats().snapshot();
        for (i, name) in StatBuff::NAMES.iter().enumerate() {
            let v = snap.counters[i] as f64;
            if i < idx::LAST_SOURCE_UPDATE {
                e.counter(
                    &format!("fdfs_storage_{name}"),
                    "A storage counter, as fdfs_monitor shows it.",
                    &[],
                    v,
                );
            } else {
                e.gauge(
                    &format!("fdfs_storage_{name}_seconds"),
                    "A storage time stamp (unix seconds), as fdfs_monitor shows it.",
                    &[],
                    v,
                );
            }
        }
        for (i, (total, free)) in self.store.disk_usage().iter().enumerate() {
            let path = i.to_string();
            e.gauge(
                "fdfs_storage_path_total_bytes",
                "Size of the file system of a store path.",
                &[("path", &path)],
                *total as f64 * MB,
            );
            e.gauge(
                "fdfs_storage_path_free_bytes",
                "Free space on the file system of a store path.",
                &[("path", &path)],
                *free as f64 * MB,
            );
        }
        let (index, offset) = self.store.binlog().position();
        e.gauge(
            "fdfs_storage_binlog_index",
            "Number of the binlog file being written.",
            &[],
            f64::from(index),
        );
        e.gauge(
            "fdfs_storage_binlog_offset_bytes",
            "Size of the binlog file being written.",
            &[],
            offset as f64,
        );
        for w in self.sync.status.snapshot() {
            let peer = [("peer", w.peer_id.as_str())];
            e.gauge(
                "fdfs_storage_sync_lag_seconds",
                "Age of the oldest change not yet sent to a peer (0 = caught up).",
                &peer,
                w.lag_secs as f64,
            );
            e.counter(
                "fdfs_storage_sync_records_sent",
                "Binlog records sent to a peer since start.",
                &peer,
                w.records_sent as f64,
            );
            e.counter(
                "fdfs_storage_sync_records_skipped",
                "Binlog records given up for a peer (file gone, bad line, refused).",
                &peer,
                w.records_skipped as f64,
            );
            e.gauge(
                "fdfs_storage_sync_state",
                "What the sync worker of a peer is doing (1 for its current state).",
                &[("peer", w.peer_id.as_str()), ("state", w.state)],
                1.0,
            );
        }
        for (idx, missing, done) in self.recovery.snapshot() {
            let path = idx.to_string();
            e.gauge(
                "fdfs_storage_recovery_files_missing",
                "Files a replaced store path lacked when its recovery began.",
                &[("path", &path)],
                missing as f64,
            );
            e.gauge(
                "fdfs_storage_recovery_files_done",
                "Of those, the files fetched or found deleted so far.",
                &[("path", &path)],
                done as f64,
            );
        }
        let trunk = &self.state.trunk;
        if trunk.params().enabled {
            e.gauge(
                "fdfs_storage_trunk_server",
                "1 when this storage is its group's trunk server (use_trunk_file).",
                &[],
                f64::from(u8::from(trunk.serving.load(Ordering::Relaxed))),
            );
            let free = trunk.free_mb.load(Ordering::Relaxed);
            if trunk.serving.load(Ordering::Relaxed) && free >= 0 {
                e.gauge(
                    "fdfs_storage_trunk_free_bytes",
                    "Free space in the group's trunk files, as the trunk server counts it.",
                    &[],
                    free as f64 * MB,
                );
                e.gauge(
                    "fdfs_storage_trunk_binlog_lines",
                    "Lines in the trunk server's trunk binlog (rewritten as a snapshot when it grows).",
                    &[],
                    trunk.binlog_lines.load(Ordering::Relaxed) as f64,
                );
            }
            e.counter(
                "fdfs_storage_trunk_binlog_compactions",
                "Times this storage rewrote its trunk binlog as a snapshot of its map.",
                &[],
                trunk.compactions.load(Ordering::Relaxed) as f64,
            );
            e.counter(
                "fdfs_storage_trunk_stored_whole",
                "Uploads small enough for a trunk slot that were stored whole (no trunk server, no answer, no room).",
                &[],
                trunk.stored_whole.load(Ordering::Relaxed) as f64,
            );
        }
        e.gauge(
            "fdfs_storage_connections",
            "Client and peer connections open now.",
            &[],
            f64::from(snap.connection_current_count),
        );
        process(&mut e, self.started);
        e.finish()
    }

    /// Trunk files: off, or who the trunk server is.
    fn trunk_status(&self) -> serde_json::Value {
        let t = &self.state.trunk;
        if !t.params().enabled {
            return json!({"enabled": false});
        }
        let server = t
            .server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| format!("{}:{}", b.ip, b.port));
        json!({
            "enabled": true,
            "trunk_server": server,
            "serving": t.serving.load(Ordering::Relaxed),
            "last_trunk_file_id": t.last_id.load(Ordering::Relaxed),
        })
    }

    /// The `/status` document.
    pub fn status(&self) -> String {
        let st = self.state.my_status.load(Ordering::Relaxed);
        let paths: Vec<_> = self
            .store
            .disk_usage()
            .iter()
            .enumerate()
            .map(|(i, (total, free))| json!({"index": i, "total_mb": total, "free_mb": free}))
            .collect();
        let peers: Vec<_> = self
            .sync
            .status
            .snapshot()
            .into_iter()
            .map(|w| {
                json!({
                    "id": w.peer_id,
                    "addr": w.peer_addr,
                    "state": w.state,
                    "lag_secs": w.lag_secs,
                    "records_sent": w.records_sent,
                    "records_skipped": w.records_skipped,
                    "last_error": w.last_error,
                })
            })
            .collect();
        let (index, offset) = self.store.binlog().position();
        json!({
            "role": "storage",
            "version": fdfs_proto::common::VERSION,
            "group": self.store.group().as_str(),
            "id": self.state.my_id(&self.store),
            "port": self.port,
            "status": status::name(st),
            "up_secs": u64::from(now()).saturating_sub(self.started),
            "store_paths": paths,
            "binlog": {"index": index, "offset": offset},
            "sync": peers,
            "trunk": self.trunk_status(),
            "recovery": self.recovery.snapshot().iter().map(|(i, m, d)| json!({"path": i, "missing": m, "done": d})).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

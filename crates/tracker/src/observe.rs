//! What a tracker shows on its metrics port (`metrics_port`; served by
//! `fdfs_http::observe`): every group and storage server it knows, their
//! status, space, last heartbeat and replication progress, and the
//! process. `/status` says the same in JSON.

use std::sync::atomic::Ordering;

use fdfs_proto::server::status;
use fdfs_runtime::metrics::{process, Exposition};
use serde_json::json;

use crate::service::{now, Tracker};

const MB: f64 = 1024.0 * 1024.0;

impl Tracker {
    /// The `/metrics` page.
    pub fn metrics(&self) -> String {
        let mut e = Exposition::new();
        e.gauge(
            "fdfs_tracker_info",
            "This tracker (always 1).",
            &[("version", fdfs_proto::common::VERSION)],
            1.0,
        );
        e.gauge(
            "fdfs_tracker_connections",
            "Connections open now.",
            &[],
            f64::from(self.current_conns.load(Ordering::Relaxed)),
        );
        let c = self.cluster();
        e.gauge(
            "fdfs_tracker_groups",
            "Groups known.",
            &[],
            c.groups.len() as f64,
        );
        for g in c.groups.values() {
            let group = [("group", g.name.as_str())];
            let (total, free) = g.space();
            e.gauge(
                "fdfs_tracker_group_free_bytes",
                "Free space of a group (its fullest ACTIVE server).",
                &group,
                free as f64 * MB,
            );
            e.gauge(
                "fdfs_tracker_group_total_bytes",
                "Size of a group (its fullest ACTIVE server).",
                &group,
                total as f64 * MB,
            );
            e.gauge(
                "fdfs_tracker_group_active_storages",
                "ACTIVE servers of a group.",
                &group,
                g.storages.values().filter(|s| s.is_active()).count() as f64,
            );
            for s in g.storages.values() {
                let who = [("group", g.name.as_str()), ("id", s.id.as_str())];
                e.gauge(
                    "fdfs_tracker_storage_status",
                    "Status of a storage server (7 = ACTIVE), its name and address as labels.",
                    &[
                        ("group", g.name.as_str()),
                        ("id", s.id.as_str()),
                        ("ip", s.ip.as_str()),
                        ("status", status::name(s.status)),
                    ],
                    f64::from(s.status),
                );
                e.gauge(
                    "fdfs_tracker_storage_free_bytes",
                    "Free space a storage server reported.",
                    &who,
                    s.free_mb() as f64 * MB,
                );
                e.gauge(
                    "fdfs_tracker_storage_total_bytes",
                    "Size a storage server reported.",
                    &who,
                    s.total_mb() as f64 * MB,
                );
                e.gauge(
                    "fdfs_tracker_storage_last_heartbeat_seconds",
                    "Unix time of a storage server's last report.",
                    &who,
                    s.last_heartbeat as f64,
                );
                for (from, ts) in s.synced.iter().filter(|(p, _)| **p != s.id) {
                    e.gauge(
                        "fdfs_tracker_storage_synced_seconds",
                        "Source time stamp of the last change a server received from a peer.",
                        &[
                            ("group", g.name.as_str()),
                            ("id", s.id.as_str()),
                            ("from", from.as_str()),
                        ],
                        f64::from(*ts),
                    );
                }
            }
        }
        drop(c);
        process(&mut e, u64::try_from(self.started).unwrap_or(0));
        e.finish()
    }

    /// The `/status` document.
    pub fn status(&self) -> String {
        let c = self.cluster();
        let groups: Vec<_> = c
            .groups
            .values()
            .map(|g| {
                let (total, free) = g.space();
                let storages: Vec<_> = g
                    .storages
                    .values()
                    .map(|s| {
                        json!({
                            "id": s.id,
                            "ip": s.ip,
                            "port": s.port,
                            "status": status::name(s.status),
                            "total_mb": s.total_mb(),
                            "free_mb": s.free_mb(),
                            "last_heartbeat": s.last_heartbeat,
                            "version": s.version,
                        })
                    })
                    .collect();
                json!({"name": g.name, "total_mb": total, "free_mb": free, "storages": storages})
            })
            .collect();
        json!({
            "role": "tracker",
            "version": fdfs_proto::common::VERSION,
            "port": self.port,
            "up_secs": now().saturating_sub(self.started),
            "connections": self.current_conns.load(Ordering::Relaxed),
            "groups": groups,
        })
        .to_string()
    }
}

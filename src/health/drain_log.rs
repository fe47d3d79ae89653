//! Makes drains visible: a line when an endpoint starts draining for a balancer (with the time its
//! sessions have left) and one when its sessions start being re-pinned. The drain itself is
//! decided per request from `EndpointState`; this only watches it.

use std::collections::HashMap;

use crate::balancer::{Lifecycle, Snapshot};

/// Last lifecycle reported per (balancer, endpoint label).
#[derive(Debug, Default)]
pub struct DrainLog {
    reported: HashMap<(String, String), Lifecycle>,
}

impl DrainLog {
    /// Logs every drain that started or ended since the last call.
    pub fn observe(&mut self, snap: &Snapshot, now: u64) {
        let mut current = HashMap::new();
        for lb in &snap.balancers {
            let drain = lb.affinity.drain_duration;
            let pools = lb.pools.iter().chain(std::iter::once(&lb.fallback));
            for e in pools.flat_map(|&p| &snap.pools[p].endpoints) {
                let life = e.lifecycle(drain, now);
                if life == Lifecycle::Serving {
                    continue;
                }
                let k = (lb.name.clone(), e.label.clone());
                // The fallback pool is often also a default pool: report each endpoint once.
                if current.contains_key(&k) {
                    continue;
                }
                let before = self.reported.get(&k).copied();
                match (before, life) {
                    (None, Lifecycle::Draining { remaining }) => log::info!(
                        "{} draining on {}: no new sessions; its sessions stay for {remaining} s more",
                        e.label,
                        lb.name
                    ),
                    (Some(Lifecycle::Draining { .. }) | None, Lifecycle::Drained) => log::info!(
                        "{} drained on {}: its sessions are re-pinned from now on",
                        e.label,
                        lb.name
                    ),
                    _ => {}
                }
                current.insert(k, life);
            }
        }
        for k in self.reported.keys() {
            if !current.contains_key(k) {
                log::info!("{} on {}: drain over (enabled again, or removed)", k.1, k.0);
            }
        }
        self.reported = current;
    }
}

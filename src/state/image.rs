//! A picture of the runtime state that outlives a process: admin drains with their clocks,
//! header sessions and (for an upgrade) health verdicts. The state file and the upgrade
//! hand-over both carry one, as JSON.
//!
//! Endpoints are named by pool id and endpoint name, sessions by balancer name and session id,
//! so an image applies to any config that still has them; whatever the config lost is skipped.

use serde::{Deserialize, Serialize};

use crate::affinity::EndpointId;
use crate::balancer::Snapshot;

/// The version written; an image of another version is refused, never half-read.
pub const VERSION: u32 = 1;

/// The runtime state of one process at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StateImage {
    pub version: u32,
    /// Unix seconds when it was taken.
    pub taken_at: u64,
    pub endpoints: Vec<EndpointImage>,
    pub sessions: Vec<BalancerSessions>,
}

/// One endpoint's drain and (in a hand-over) health.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointImage {
    pub pool: String,
    pub name: String,
    /// Drained through the admin API.
    pub admin_drained: bool,
    /// Unix seconds when its drain began; 0 while serving.
    pub drain_since: u64,
    /// The last monitor verdict; absent in the state file (a restart checks afresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// One balancer's header sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BalancerSessions {
    pub balancer: String,
    /// (session id as 32 hex digits, endpoint id).
    pub pins: Vec<(String, u64)>,
}

/// What applying an image changed, for the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub drains: usize,
    pub sessions: usize,
    pub health: usize,
}

impl StateImage {
    /// The state `snap` sees now; health verdicts only when `with_health` (a hand-over).
    pub fn capture(snap: &Snapshot, now: u64, with_health: bool) -> StateImage {
        let endpoints = snap
            .pools
            .iter()
            .flat_map(|p| {
                p.endpoints.iter().map(|e| EndpointImage {
                    pool: p.id.clone(),
                    name: e.name.clone(),
                    admin_drained: e.state.admin_drained(),
                    drain_since: e.state.drain_since(),
                    healthy: with_health.then(|| e.state.healthy()),
                })
            })
            .collect();
        let sessions = snap
            .balancers
            .iter()
            .filter_map(|b| {
                let store = b.sessions.as_ref()?;
                let pins = store
                    .entries()
                    .into_iter()
                    .map(|(id, ep)| (format!("{id:032x}"), ep.0))
                    .collect();
                Some(BalancerSessions {
                    balancer: b.name.clone(),
                    pins,
                })
            })
            .collect();
        StateImage {
            version: VERSION,
            taken_at: now,
            endpoints,
            sessions,
        }
    }

    /// Applies the image to the endpoints and session stores of `snap` that still exist.
    /// Drains carry their start time, so a countdown goes on where it was.
    pub fn apply(&self, snap: &Snapshot) -> Applied {
        let mut applied = Applied::default();
        for img in &self.endpoints {
            let Some(e) = snap.endpoint_named(&img.pool, &img.name) else {
                continue;
            };
            e.state
                .restore(img.admin_drained, img.drain_since, e.enabled);
            applied.drains += usize::from(img.admin_drained || img.drain_since != 0);
            if let Some(h) = img.healthy {
                e.state.set_healthy(h);
                applied.health += usize::from(!h);
            }
        }
        for b in &self.sessions {
            let Some(store) = snap
                .balancers
                .iter()
                .find(|lb| lb.name == b.balancer)
                .and_then(|lb| lb.sessions.as_ref())
            else {
                continue;
            };
            for (id, endpoint) in &b.pins {
                if let Ok(id) = u128::from_str_radix(id, 16) {
                    store.pin(id, EndpointId(*endpoint));
                    applied.sessions += 1;
                }
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::fixture;

    fn snap() -> Snapshot {
        let lb = "    session_affinity: header\n    session_affinity_attributes: { headers: [x-user], drain_duration: 300 }\n";
        fixture::snapshot(&fixture::web_ab(lb), 1_000)
    }

    #[test]
    fn image_round_trips_drains_sessions_and_health() {
        let old = snap();
        let b = &old.pools[0].endpoints[1];
        b.state.drain(1_100);
        old.pools[0].endpoints[0].state.set_healthy(false);
        let store = old.balancers[0].sessions.as_ref().unwrap();
        store.pin(42, old.pools[0].endpoints[0].id);

        let image = StateImage::capture(&old, 1_200, true);
        let json = serde_json::to_vec(&image).unwrap();
        let back: StateImage = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, image);

        let new = snap();
        let applied = back.apply(&new);
        assert_eq!(applied.drains, 1);
        assert_eq!(applied.sessions, 1);
        let nb = &new.pools[0].endpoints[1];
        assert!(nb.state.admin_drained());
        assert_eq!(nb.state.drain_since(), 1_100, "the countdown goes on");
        assert!(!new.pools[0].endpoints[0].state.healthy());
        let nstore = new.balancers[0].sessions.as_ref().unwrap();
        assert_eq!(nstore.get(42), Some(new.pools[0].endpoints[0].id));
    }

    #[test]
    fn state_file_image_leaves_health_alone() {
        let old = snap();
        old.pools[0].endpoints[0].state.set_healthy(false);
        let image = StateImage::capture(&old, 1_200, false);
        let new = snap();
        image.apply(&new);
        assert!(new.pools[0].endpoints[0].state.healthy());
    }
}

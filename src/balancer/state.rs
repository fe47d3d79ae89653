//! Runtime state of endpoints: health, drain, in-flight counters. It outlives config snapshots
//! (a reload re-attaches the same state to an endpoint with the same pool id and name), and it is
//! read and written with atomics only, so the request path takes no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::affinity::sessions::SessionStore;
use crate::affinity::token::CookieKeys;
use crate::config::Affinity;

use super::snapshot::Snapshot;

/// Where an endpoint is in its life: serving new sessions, draining old ones, or drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Serving,
    /// Disabled, but sessions pinned to it still go to it for `remaining` seconds.
    Draining {
        remaining: u64,
    },
    /// Disabled and past its drain: its sessions are re-pinned.
    Drained,
}

/// The live state of one endpoint, shared by every snapshot that contains it.
#[derive(Debug)]
pub struct EndpointState {
    healthy: AtomicBool,
    /// Drained through the admin API, whatever the file says.
    admin_drained: AtomicBool,
    /// Unix seconds when the current drain began; 0 while enabled.
    drain_since: AtomicU64,
    /// Requests sent to it and not yet finished.
    pub inflight: AtomicUsize,
    /// Requests sent to it since start.
    pub requests: AtomicU64,
}

impl Default for EndpointState {
    fn default() -> Self {
        EndpointState {
            // SPEC §2: an endpoint counts as healthy until its first check.
            healthy: AtomicBool::new(true),
            admin_drained: AtomicBool::new(false),
            drain_since: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

impl EndpointState {
    /// What the health monitor last said (true until the first check).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Records a monitor verdict; returns true when it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Relaxed) != healthy
    }

    /// Drained through the admin API.
    pub fn admin_drained(&self) -> bool {
        self.admin_drained.load(Relaxed)
    }

    /// Marks a runtime drain (true) or its end (false).
    pub fn set_admin_drained(&self, drained: bool) {
        self.admin_drained.store(drained, Relaxed);
    }

    /// Starts the drain clock at `now` if it is not running, or stops it when `enabled`.
    pub fn sync_enabled(&self, enabled: bool, now: u64) {
        if enabled {
            self.drain_since.store(0, Relaxed);
        } else {
            let _ = self
                .drain_since
                .compare_exchange(0, now.max(1), Relaxed, Relaxed);
        }
    }

    /// Unix seconds when the current drain began; 0 while enabled.
    pub fn drain_since(&self) -> u64 {
        self.drain_since.load(Relaxed)
    }

    /// Takes over a drain recorded elsewhere (state hand-over, the state file, a shared store):
    /// the admin flag as given and, when the endpoint is disabled now (`file_enabled` false or
    /// drained through the admin API), the clock from `since` so its countdown goes on.
    pub fn restore_drain(&self, admin_drained: bool, since: u64, file_enabled: bool) {
        self.admin_drained.store(admin_drained, Relaxed);
        if file_enabled && !admin_drained {
            self.drain_since.store(0, Relaxed);
        } else if since != 0 {
            self.drain_since.store(since, Relaxed);
        }
    }

    /// The lifecycle for an endpoint whose effective `enabled` flag is given.
    pub fn lifecycle(&self, enabled: bool, drain_duration: u64, now: u64) -> Lifecycle {
        if enabled {
            return Lifecycle::Serving;
        }
        let since = self.drain_since.load(Relaxed);
        let ends = since.saturating_add(drain_duration);
        if since != 0 && now < ends {
            Lifecycle::Draining {
                remaining: ends - now,
            }
        } else {
            Lifecycle::Drained
        }
    }
}

/// State that survives reloads: endpoint states keyed by (pool id, endpoint name), header
/// session stores keyed by balancer name, and the random cookie key used when the file sets no
/// `cookie_secret` (so a reload does not void every cookie).
///
/// The registry is behind one `Mutex` that only commits and operator actions (drain, undrain)
/// take, never a request: a request reaches this state through its snapshot's `Arc`s.
#[derive(Debug)]
pub struct RuntimeState {
    registry: Mutex<Registry>,
    pub random_keys: CookieKeys,
}

impl Default for RuntimeState {
    fn default() -> Self {
        RuntimeState {
            registry: Mutex::new(Registry::default()),
            random_keys: CookieKeys::random(),
        }
    }
}

/// The states that outlive snapshots, as the last committed snapshot uses them.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: HashMap<(String, String), Arc<EndpointState>>,
    sessions: HashMap<String, Arc<SessionStore>>,
}

impl RuntimeState {
    /// The registry, held until the guard drops; while it is held no other commit or operator
    /// action runs, so a commit and its snapshot store happen as one step.
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Header sessions held now, per balancer.
    pub fn session_counts(&self) -> Vec<(String, u64)> {
        let reg = self.lock();
        reg.sessions
            .iter()
            .map(|(b, s)| (b.clone(), s.len()))
            .collect()
    }
}

impl Registry {
    /// Commits `snap`'s claim on runtime state at `now`: each endpoint takes the state of the
    /// endpoint with its pool id and name (its fresh one when it is new), its drain clock
    /// follows the file's `enabled`; each `header` balancer takes its session store (resized
    /// when its limits changed). State of endpoints and balancers `snap` lacks is dropped, so
    /// the registry holds exactly what `snap` uses.
    pub fn adopt(&mut self, snap: &mut Snapshot, now: u64) {
        let mut endpoints = HashMap::with_capacity(self.endpoints.len());
        for pool in &mut snap.pools {
            for e in &mut pool.endpoints {
                let key = (pool.id.clone(), e.name.clone());
                if let Some(state) = self.endpoints.remove(&key) {
                    e.state = state;
                }
                e.state
                    .sync_enabled(e.enabled && !e.state.admin_drained(), now);
                endpoints.insert(key, e.state.clone());
            }
        }
        self.endpoints = endpoints;

        let mut sessions = HashMap::new();
        for b in &mut snap.balancers {
            if b.affinity.mode != Affinity::Header {
                continue;
            }
            let (ttl, capacity) = (Duration::from_secs(b.affinity.ttl), b.affinity.max_sessions);
            let store = match self.sessions.remove(&b.name) {
                Some(s) if s.has_limits(ttl, capacity) => s,
                Some(s) => Arc::new(s.resized(ttl, capacity)),
                None => Arc::new(SessionStore::new(ttl, capacity)),
            };
            sessions.insert(b.name.clone(), store.clone());
            b.sessions = Some(store);
        }
        self.sessions = sessions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_clock_runs_from_first_disable() {
        let s = EndpointState::default();
        assert_eq!(s.lifecycle(true, 60, 100), Lifecycle::Serving);
        s.sync_enabled(false, 100);
        s.sync_enabled(false, 130); // a later reload does not restart the clock
        assert_eq!(
            s.lifecycle(false, 60, 130),
            Lifecycle::Draining { remaining: 30 }
        );
        assert_eq!(s.lifecycle(false, 60, 160), Lifecycle::Drained);
        assert_eq!(s.lifecycle(false, 0, 100), Lifecycle::Drained);
        s.sync_enabled(true, 170);
        assert_eq!(s.lifecycle(true, 60, 170), Lifecycle::Serving);
    }

    fn config(endpoints: &[&str]) -> crate::config::Validated {
        let eps: String = endpoints
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "      - {{ name: {n}, address: \"127.0.0.1:{}\" }}\n",
                    9001 + i
                )
            })
            .collect();
        let yaml = format!(
            "listeners: [{{ address: \"127.0.0.1:8080\" }}]\npools:\n  - id: web\n    endpoints:\n{eps}load_balancers: [{{ name: \"*\", default_pools: [web] }}]\n"
        );
        crate::config::Config::from_yaml(&yaml, "test").unwrap()
    }

    #[test]
    fn adopt_keeps_state_of_surviving_endpoints() {
        let rt = RuntimeState::default();
        let first = Snapshot::build(config(&["a", "b"]), &rt, 100);
        first.pools[0].endpoints[0].state.set_healthy(false);
        let second = Snapshot::build(config(&["a"]), &rt, 100);
        let (a1, a2) = (&first.pools[0].endpoints[0], &second.pools[0].endpoints[0]);
        assert!(Arc::ptr_eq(&a1.state, &a2.state));
        assert!(!a2.state.healthy());
        let third = Snapshot::build(config(&["a", "b"]), &rt, 100);
        assert!(
            !Arc::ptr_eq(
                &first.pools[0].endpoints[1].state,
                &third.pools[0].endpoints[1].state
            ),
            "a removed endpoint starts afresh"
        );
    }

    #[test]
    fn a_compiled_snapshot_claims_nothing_until_adopted() {
        let rt = RuntimeState::default();
        let live = Snapshot::build(config(&["a"]), &rt, 100);
        live.pools[0].endpoints[0].state.set_admin_drained(true);
        // A compile that is never committed (a reload that fails later) leaves the registry as
        // the live snapshot uses it.
        let draft = Snapshot::compile(config(&["b"]), &rt.random_keys);
        drop(draft);
        let next = Snapshot::build(config(&["a"]), &rt, 100);
        assert!(Arc::ptr_eq(
            &live.pools[0].endpoints[0].state,
            &next.pools[0].endpoints[0].state
        ));
        assert!(next.pools[0].endpoints[0].state.admin_drained());
    }
}

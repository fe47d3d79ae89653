//! Runtime state of endpoints: health and its last reason, drain, in-flight counters. It outlives
//! config snapshots (a reload re-attaches the same state to an endpoint with the same pool id and
//! name), and what the request path reads is atomics only, so it takes no lock. `EndpointState`
//! is the one owner of these facts: the drain state machine's transitions are its methods, so the
//! admin API, the state file, the hand-over and Redis all drive it the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::affinity::sessions::SessionStore;
use crate::affinity::token::CookieKeys;

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
    /// What its last health verdict (or the resolver) said, for the status page; never read
    /// on the request path.
    reason: Mutex<Option<String>>,
    /// Where it is reached now (SPEC §3.10): the resolver's latest answer for its name, or its
    /// IP literal; empty while a name has never resolved (then it counts as unhealthy).
    pub addresses: super::addresses::AddressCell,
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
            reason: Mutex::new(None),
            addresses: Default::default(),
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

    /// Records what the last check (or the resolver) found; true when that differs from what
    /// was recorded, so a caller can log a reason once rather than every round.
    pub fn set_reason(&self, reason: &str) -> bool {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.as_deref() == Some(reason) {
            return false;
        }
        *r = Some(reason.to_string());
        true
    }

    /// What the last check (or the resolver) found, if anything yet.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drained through the admin API.
    pub fn admin_drained(&self) -> bool {
        self.admin_drained.load(Relaxed)
    }

    /// An admin drain begins at `now` (its clock keeps running if the file already disabled it).
    pub fn drain(&self, now: u64) {
        self.admin_drained.store(true, Relaxed);
        self.run_drain_clock(false, now);
    }

    /// An admin drain ends at `now`: the endpoint serves again unless the file disables it, in
    /// which case its drain clock runs on (or starts at `now`).
    pub fn undrain(&self, file_enabled: bool, now: u64) {
        self.admin_drained.store(false, Relaxed);
        self.run_drain_clock(file_enabled, now);
    }

    /// Starts the drain clock at `now` if it is not running, or stops it when `enabled`.
    pub fn run_drain_clock(&self, enabled: bool, now: u64) {
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
    pub fn restore(&self, admin_drained: bool, since: u64, file_enabled: bool) {
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
    pub(super) endpoints: HashMap<(String, String), Arc<EndpointState>>,
    pub(super) sessions: HashMap<String, Arc<SessionStore>>,
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
            .map(|(b, s)| (b.clone(), s.count()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_clock_runs_from_first_disable() {
        let s = EndpointState::default();
        assert_eq!(s.lifecycle(true, 60, 100), Lifecycle::Serving);
        s.run_drain_clock(false, 100);
        s.run_drain_clock(false, 130); // a later reload does not restart the clock
        assert_eq!(
            s.lifecycle(false, 60, 130),
            Lifecycle::Draining { remaining: 30 }
        );
        assert_eq!(s.lifecycle(false, 60, 160), Lifecycle::Drained);
        assert_eq!(s.lifecycle(false, 0, 100), Lifecycle::Drained);
        s.run_drain_clock(true, 170);
        assert_eq!(s.lifecycle(true, 60, 170), Lifecycle::Serving);
    }
}

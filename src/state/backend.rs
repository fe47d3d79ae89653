//! The seam between tether and where runtime state is shared beyond this process (SPEC §5): a
//! [`Backend`]. `embedded` shares nothing (the state file and the hand-over are the process's
//! own, driven by `ops::state_sync`); `redis` shares header sessions and admin drains with every
//! instance. A third store (etcd, a Redis cluster) is one more implementation here, chosen in
//! `StateStore::new`; nothing else changes.
//!
//! A backend never changes runtime state by itself: [`Backend::poll`] returns what the other
//! instances agreed on, and the caller applies it with reloads held off, as any operator change.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::affinity::header_key::SessionKey;
use crate::balancer::{Decision, Snapshot};

/// Admin drains every instance agreed on: `pool/endpoint` → the unix second the drain began.
pub type SharedDrains = HashMap<String, u64>;

/// Where runtime state is shared. Every method returns without blocking a thread; what waits
/// on the network is bounded by the backend's own budget.
#[async_trait]
pub trait Backend: Send + Sync + Debug {
    /// Whether header sessions are shared, so that [`Backend::prepare`] is worth a call.
    fn shares_sessions(&self) -> bool {
        false
    }

    /// Connects, or whatever the backend needs in the process's runtime; called once, before
    /// the first poll.
    fn start(&self) {}

    /// True while the backend answers.
    fn reachable(&self) -> bool {
        true
    }

    /// Between the two steps of routing: makes header session `key` of balancer `balancer`
    /// current in its local store.
    async fn prepare(&self, _snap: &Snapshot, _balancer: usize, _key: SessionKey) {}

    /// After `decision` pinned header session `session` to its target: kept in the balancer's
    /// local store, and shared when the backend shares sessions.
    fn remember(&self, snap: &Snapshot, decision: &Decision, session: u128);

    /// An admin drain (`since` = its start) or undrain (`None`) of `pool`/`name` made here.
    fn drain_changed(&self, _pool: &str, _name: &str, _since: Option<u64>) {}

    /// One background round within `budget`: writes what this instance changed, reads what the
    /// others did. `Some` drains to apply; `None` when there is nothing to apply (nothing
    /// shared, unreachable, or a local change raced the read).
    async fn poll(&self, _snap: &Snapshot, _budget: Duration) -> Option<SharedDrains> {
        None
    }

    /// The budget of a steady-state poll; the first poll and the last get more (connects).
    fn poll_budget(&self) -> Duration {
        Duration::ZERO
    }

    /// What `/status` says about the backend (never a URL or a password).
    fn status_json(&self) -> Value;

    /// Where ACME accounts and certificates are kept when the backend shares them with the
    /// other instances (with the order lock); `None`: in each listener's `storage` directory.
    fn cert_store(&self) -> Option<Arc<dyn crate::state::certs::CertStore>> {
        None
    }
}

/// The embedded store: nothing shared; header sessions live in each balancer's local store.
#[derive(Debug)]
pub struct Embedded {
    /// The state file, shown in `/status`.
    pub file: Option<std::path::PathBuf>,
}

#[async_trait]
impl Backend for Embedded {
    fn remember(&self, snap: &Snapshot, decision: &Decision, session: u128) {
        let lb = &snap.balancers[decision.balancer];
        if let Some(store) = &lb.sessions {
            store.pin(session, snap.endpoint(decision.target).id);
        }
    }

    fn status_json(&self) -> Value {
        serde_json::json!({
            "store": "embedded",
            "file": self.file.as_ref().map(|f| f.display().to_string()),
            "reachable": true,
        })
    }
}

/// A backend behind an `Arc`, as the state store holds it.
pub type Shared = Arc<dyn Backend>;

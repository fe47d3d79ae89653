//! Runtime state beyond the config file (SPEC §5): admin drains with their start time, drain
//! clocks, header sessions and health verdicts — and where they live so that they survive an
//! upgrade, a restart, and being shared by several instances.
//!
//! [`StateStore`] is what the rest of tether talks to; behind it, a [`Backend`] (`backend.rs`)
//! is the seam where state is shared: embedded (nothing shared) or Redis, and the place a third
//! store would go. The request path reads the in-process copies it always has (endpoint states,
//! the header-session caches) and calls [`StateStore::prepare`] between the two steps of routing
//! (with the balancer and session key `balancer::admit` computed once) and
//! [`StateStore::remember`] after it; neither blocks a thread, and with Redis `prepare` waits at
//! most `timeout_ms`, at most once per session per second. The admin API reports drains through
//! [`StateStore::drain_changed`]. `ops::StateSync` does the rest in the background: restore at
//! start (state file, upgrade hand-over), the backend's polls (whose drains it applies with
//! reloads held off), state-file writes.

pub mod acme;
pub mod backend;
pub mod certs;
pub mod file;
pub mod handover;
pub mod image;
pub mod redis;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::Value;

use crate::balancer::{Admitted, Decision, Snapshot};
use crate::config::{StateSection, StoreKind};

pub use backend::{Backend, SharedDrains};
pub use image::StateImage;

/// Where this process keeps its runtime state; chosen at start (a reload does not change it):
/// the shared [`Backend`], the embedded store's file, and whether a successor took it over.
#[derive(Debug)]
pub struct StateStore {
    kind: StoreKind,
    /// The embedded store's file, absolute.
    file: Option<PathBuf>,
    backend: backend::Shared,
    /// Set once this process handed its state to a successor (upgrade).
    handed_over: AtomicBool,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore::new(&StateSection::default())
    }
}

impl StateStore {
    /// The store `state:` asks for. Nothing is connected or read yet: [`StateSync`] does that.
    pub fn new(cfg: &StateSection) -> StateStore {
        let file = cfg.file.as_ref().map(|f| {
            let p = PathBuf::from(f);
            match std::env::current_dir() {
                Ok(base) if p.is_relative() => base.join(p),
                _ => p,
            }
        });
        let backend: backend::Shared = match (cfg.store, &cfg.redis) {
            (StoreKind::Redis, Some(r)) => {
                Arc::new(redis::RedisBackend(Arc::new(redis::RedisStore::new(r))))
            }
            _ => Arc::new(backend::Embedded { file: file.clone() }),
        };
        StateStore {
            kind: cfg.store,
            file,
            backend,
            handed_over: AtomicBool::new(false),
        }
    }

    /// `embedded` or `redis`.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The embedded store's file, when one is configured.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Records that a successor confirmed it took this process's state over (it owns the state
    /// file now).
    pub fn handed_over(&self) {
        self.handed_over.store(true, Relaxed);
    }

    /// True once a successor took this process's state over.
    pub fn has_handed_over(&self) -> bool {
        self.handed_over.load(Relaxed)
    }

    /// True while the store answers (the embedded store always does).
    pub fn reachable(&self) -> bool {
        self.backend.reachable()
    }

    /// Between the two steps of routing: makes the request's header session current from a
    /// shared backend (bounded wait). Returns at once when nothing is shared or the request has
    /// no header session.
    pub async fn prepare(&self, snap: &Snapshot, admitted: &Admitted) {
        if let Some(key) = admitted.session.filter(|_| self.backend.shares_sessions()) {
            self.backend.prepare(snap, admitted.balancer, key).await;
        }
    }

    /// After `decision` pinned header session `session` to its target (a new session or a
    /// re-pin): kept locally, and shared as the backend shares sessions.
    pub fn remember(&self, snap: &Snapshot, decision: &Decision, session: u128) {
        self.backend.remember(snap, decision, session);
    }

    /// An admin drain (`since` = its start, unix seconds) or undrain (`None`) of `pool`/`name`
    /// was made here; shared with every instance when the backend shares. (The state file
    /// notices drain changes by itself.)
    pub fn drain_changed(&self, pool: &str, name: &str, since: Option<u64>) {
        self.backend.drain_changed(pool, name, since);
    }

    /// Connects the backend; once, in the process's runtime.
    pub fn start(&self) {
        self.backend.start();
    }

    /// One background round of the backend (see [`Backend::poll`]); `first_or_last` gives it
    /// the longer budget a connect may need.
    pub async fn poll(&self, snap: &Snapshot, first_or_last: bool) -> Option<SharedDrains> {
        let budget = if first_or_last {
            redis::POLL_TIMEOUT
        } else {
            self.backend.poll_budget()
        };
        self.backend.poll(snap, budget).await
    }

    /// Where the ACME service keeps accounts and certificates: the shared backend's store, or
    /// files in `storage` (SPEC §3.11).
    pub fn cert_store(&self, storage: &str) -> Arc<dyn certs::CertStore> {
        self.backend
            .cert_store()
            .unwrap_or_else(|| Arc::new(certs::DirStore::new(storage)))
    }

    /// The shared certificate store, when the backend has one (HTTP-01 answers made elsewhere).
    pub fn shared_cert_store(&self) -> Option<Arc<dyn certs::CertStore>> {
        self.backend.cert_store()
    }

    /// What `/status` says about the store: which one, whether it answers, where it is (never
    /// the Redis URL or password).
    pub fn status_json(&self) -> Value {
        self.backend.status_json()
    }
}

/// The start of `pool`/`name`'s admin drain in `snap`, or `None` when it is not drained through
/// the admin API.
pub fn admin_drain_of(snap: &Snapshot, pool: &str, name: &str) -> Option<u64> {
    let e = snap.endpoint_named(pool, name)?;
    e.state.admin_drained().then(|| e.state.drain_since())
}

//! Runtime state beyond the config file (SPEC §5): admin drains with their start time, drain
//! clocks, header sessions and health verdicts — and where they live so that they survive an
//! upgrade, a restart, and being shared by several instances.
//!
//! [`StateStore`] is the one seam the rest of tether talks to. The request path reads the
//! in-process copies it always has (endpoint states, the header-session caches) and calls
//! [`StateStore::prepare`] between the two steps of routing (with the balancer and session key
//! `balancer::admit` computed once) and [`StateStore::remember`] after it; neither blocks a thread,
//! and with Redis `prepare` waits at most `timeout_ms`, at most once per session per second.
//! The admin API reports drains through [`StateStore::drain_changed`]. [`StateSync`] does the
//! rest in the background: restore at start (state file, upgrade hand-over), Redis polling,
//! state-file writes.

pub mod file;
pub mod handover;
pub mod image;
pub mod redis;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::balancer::route::is_first_choice;
use crate::balancer::{Admitted, Decision, Outcome, Snapshot};
use crate::config::{StateSection, StoreKind};

pub use image::StateImage;

/// What the state stores need of the running instance: the snapshot in effect, and a way to
/// change runtime state with reloads held off. `crate::instance::Instance` is the one implementation;
/// the trait keeps this module below it.
pub trait Operated: Send + Sync {
    /// The snapshot in effect now.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Runs `change` on the snapshot in effect, with reloads held off.
    fn operate(&self, change: &mut dyn FnMut(&Snapshot));
}

use self::redis::RedisStore;

/// Where this process keeps its runtime state; chosen at start (a reload does not change it).
#[derive(Debug)]
pub struct StateStore {
    kind: StoreKind,
    /// The embedded store's file, absolute.
    file: Option<PathBuf>,
    redis: Option<Arc<RedisStore>>,
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
        StateStore {
            kind: cfg.store,
            file,
            redis: match (cfg.store, &cfg.redis) {
                (StoreKind::Redis, Some(r)) => Some(Arc::new(RedisStore::new(r))),
                _ => None,
            },
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

    /// The Redis store, when `store: redis`.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        self.redis.as_ref()
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
        self.redis.as_ref().is_none_or(|r| r.is_up())
    }

    /// Before routing: makes the request's header session current from a shared store (see
    /// [`RedisStore::prepare`]). Returns at once for the embedded store.
    pub async fn prepare(&self, snap: &Snapshot, admitted: &Admitted) {
        if let (Some(r), Some(key)) = (&self.redis, admitted.session) {
            r.prepare(snap, admitted.balancer, key).await;
        }
    }

    /// After `decision` pinned header session `session` to its target (a new session or a
    /// re-pin): kept here, and shared when the store is Redis (in the background) if it is away
    /// from its first choice (see [`redis::sessions`]). A new session does not overwrite one
    /// another instance pinned meanwhile; a re-pin does.
    pub fn remember(&self, snap: &Snapshot, decision: &Decision, session: u128) {
        let lb = &snap.balancers[decision.balancer];
        let Some(store) = &lb.sessions else {
            return;
        };
        let endpoint = snap.endpoint(decision.target).id;
        match &self.redis {
            None => store.pin(session, endpoint),
            Some(r) => {
                let home = decision
                    .key
                    .is_some_and(|k| is_first_choice(snap, lb, k, decision.target));
                let pinned = redis::Pinned {
                    session,
                    endpoint,
                    new: decision.outcome == Outcome::New,
                    home,
                };
                r.remember(&lb.name, lb.affinity.ttl, store, pinned);
            }
        }
    }

    /// An admin drain (`since` = its start, unix seconds) or undrain (`None`) of `pool`/`name`
    /// was made here; shared with every instance when the store is Redis. (The state file
    /// notices drain changes by itself.)
    pub fn drain_changed(&self, pool: &str, name: &str, since: Option<u64>) {
        if let Some(r) = &self.redis {
            r.drain_changed(pool, name, since);
        }
    }

    /// What `/status` says about the store: which one, whether it answers, where it is (never
    /// the Redis URL or password).
    pub fn status_json(&self) -> Value {
        match &self.redis {
            Some(r) => json!({
                "store": "redis",
                "address": r.address(),
                "reachable": r.is_up(),
            }),
            None => json!({
                "store": "embedded",
                "file": self.file.as_ref().map(|f| f.display().to_string()),
                "reachable": true,
            }),
        }
    }
}

/// The start of `pool`/`name`'s admin drain in `snap`, or `None` when it is not drained through
/// the admin API.
pub fn admin_drain_of(snap: &Snapshot, pool: &str, name: &str) -> Option<u64> {
    let e = snap.endpoint_named(pool, name)?;
    e.state.admin_drained().then(|| e.state.drain_since())
}

//! The Redis store (`state.store: redis`, SPEC §5): header sessions and admin drains shared by
//! every instance that uses the same Redis.
//!
//! Layout under `key_prefix`:
//! - `session:<balancer>:<session id hex>` → endpoint id, with the idle TTL as Redis TTL; only
//!   for a session away from its first choice (see [`sessions`]); the id is keyed;
//! - `drains` → a hash `<pool>/<endpoint>` → unix second the admin drain began;
//! - `acme:…` → ACME accounts, certificates, order locks and HTTP-01 answers (see [`certs`]);
//! - `epoch` → a random value written once into an empty Redis: when it changes or vanishes,
//!   Redis lost its data (a restart without persistence) and each instance writes its drains back.
//!
//! Requests read a session from Redis at most once per [`REFRESH`] (the local copy answers in
//! between) and never wait longer than `timeout_ms`; while Redis is unreachable they do not ask
//! it at all. Drains are polled every [`POLL`], so a drain made on any instance applies on
//! every other within a second.
//!
//! What Redis holds is read as data, never trusted as shape: a value tether cannot read is a
//! miss for that one key or field, logged once ([`Noted`]); only Redis not answering is an
//! outage.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::affinity::header_key::SessionKey;
use crate::config::RedisSection;

use crate::telemetry::store as metrics;

pub mod certs;
mod drains;
pub mod sessions;

pub use drains::apply_drains;
pub use sessions::Pinned;

/// How long a session read from (or written to) Redis is trusted without asking again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How often drains are read from Redis (and the connection's health is checked).
pub const POLL: Duration = Duration::from_millis(250);
/// The budget of the background poll: connects and the drain hash may take longer than a
/// request's budget without holding any request.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The Redis store of one process.
pub struct RedisStore {
    cfg: RedisSection,
    address: String,
    timeout: Duration,
    /// Created by the background sync on its runtime; lazy: it connects on first use and
    /// reconnects by itself.
    conn: OnceLock<ConnectionManager>,
    health: AtomicU8,
    outage_started: Mutex<Option<Instant>>,
    /// Drain changes made here and not yet written: `<pool>/<endpoint>` → start (None = undrain).
    pending: Mutex<HashMap<String, Option<u64>>>,
    /// Bumped on every local drain change, so a poll that raced one does not undo it.
    generation: AtomicU64,
    /// The `epoch` value last seen.
    epoch: Mutex<Option<String>>,
    /// When (on [`RedisStore::clock_ms`]) Redis last may have lost what this instance wrote:
    /// an outage began, or the epoch changed. A session confirmed before then and missing now
    /// is written back; one confirmed since was removed on purpose.
    lost_ms: AtomicU64,
    /// Malformed values already logged.
    noted: Noted,
    started: Instant,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .finish()
    }
}

/// A store operation failed; the message is safe to log (no URL, no password).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl RedisStore {
    /// A store for `cfg`; nothing is connected until [`RedisStore::connect`].
    pub fn new(cfg: &RedisSection) -> RedisStore {
        // Not reachable until the first answer.
        metrics::set_up(false);
        RedisStore {
            address: cfg.address(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            cfg: cfg.clone(),
            conn: OnceLock::new(),
            health: AtomicU8::new(UNKNOWN),
            outage_started: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            epoch: Mutex::new(None),
            lost_ms: AtomicU64::new(0),
            noted: Noted::default(),
            started: Instant::now(),
        }
    }

    /// `host:port` of the Redis server, safe to log.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// One request's budget (`timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True while Redis answers within its budget.
    pub fn is_up(&self) -> bool {
        self.health.load(Relaxed) == UP
    }

    /// Creates the (lazy) connection manager; must run inside a tokio runtime that lives as long
    /// as the process. A URL the client refuses is logged without the URL.
    pub fn connect(&self) {
        if self.conn.get().is_some() {
            return;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(POLL_TIMEOUT))
            .set_response_timeout(Some(POLL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let made = redis::Client::open(self.cfg.url.expose())
            .and_then(|c| ConnectionManager::new_lazy_with_config(c, config));
        match made {
            Ok(m) => {
                let _ = self.conn.set(m);
            }
            Err(e) => self.failed(&self.scrub(&e)),
        }
    }

    /// Milliseconds on this store's clock, never 0.
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// An error's text without anything of the URL but its address.
    fn scrub(&self, e: &redis::RedisError) -> StoreError {
        let mut text = e.to_string();
        if text.contains(self.cfg.url.expose()) {
            text = text.replace(self.cfg.url.expose(), &self.address);
        }
        if let Some(pw) = redis::Client::open(self.cfg.url.expose())
            .ok()
            .and_then(|c| {
                c.get_connection_info()
                    .redis_settings()
                    .password()
                    .map(str::to_owned)
            })
            .filter(|p| !p.is_empty())
        {
            text = text.replace(&pw, "[redacted]");
        }
        StoreError(text)
    }

    /// Records a failed operation: counted, and the first of an outage logged.
    fn failed(&self, e: &StoreError) {
        metrics::record_error();
        let before = self.health.swap(DOWN, Relaxed);
        if before != DOWN {
            self.lost_ms.store(self.clock_ms(), Relaxed);
            metrics::set_up(false);
            *self
                .outage_started
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            log::warn!(
                "state store: Redis at {} unreachable ({e}); failing open: header sessions by \
                 consistent hashing, drains as last known",
                self.address
            );
        }
    }

    /// Records an answered operation; the end of an outage is logged.
    fn answered(&self) {
        let before = self.health.swap(UP, Relaxed);
        if before == UP {
            return;
        }
        metrics::set_up(true);
        let began = self
            .outage_started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match (before, began) {
            (DOWN, Some(t)) => log::info!(
                "state store: Redis at {} reachable again after {:.1} s",
                self.address,
                t.elapsed().as_secs_f64()
            ),
            _ => log::info!("state store: connected to Redis at {}", self.address),
        }
    }

    /// Runs `cmd` within `budget`; a failure or timeout is recorded.
    async fn run<T>(
        &self,
        budget: Duration,
        f: impl FnOnce(ConnectionManager) -> redis::RedisFuture<'static, T>,
    ) -> Result<T, StoreError> {
        let Some(conn) = self.conn.get().cloned() else {
            return Err(StoreError("not connected yet".into()));
        };
        let result = match tokio::time::timeout(budget, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if wrong_type(&e) => {
                // Redis answered: a value tether did not write is no outage.
                self.answered();
                let e = self.scrub(&e);
                if self.noted.first(&e.0) {
                    log::warn!("state store: a key holds another type than tether writes: {e}");
                }
                return Err(e);
            }
            Ok(Err(e)) => Err(self.scrub(&e)),
            Err(_) => Err(StoreError(format!(
                "no answer within {} ms",
                budget.as_millis()
            ))),
        };
        match &result {
            Ok(_) => self.answered(),
            Err(e) => self.failed(e),
        }
        result
    }

    fn session_key(&self, balancer: &str, id: u128) -> String {
        format!("{}session:{balancer}:{id:032x}", self.cfg.key_prefix)
    }

    fn drains_key(&self) -> String {
        format!("{}drains", self.cfg.key_prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}epoch", self.cfg.key_prefix)
    }

    /// Queues an admin drain (`since` = its start) or undrain (`None`) of `pool`/`name` for
    /// every instance; written by the next poll, or as soon as Redis is back.
    pub fn drain_changed(&self, pool: &str, name: &str, since: Option<u64>) {
        self.generation.fetch_add(1, Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{pool}/{name}"), since);
    }
}

/// True when every error reply in `e` says a key holds another type than tether writes there:
/// Redis answered, the value is malformed.
fn wrong_type(e: &redis::RedisError) -> bool {
    e.clone()
        .into_server_errors()
        .is_some_and(|errs| !errs.is_empty() && errs.iter().all(|(_, s)| s.code() == "WRONGTYPE"))
}

/// The most malformed values remembered as logged; past it, new ones are not logged at all
/// (whoever writes that many into Redis is not informed by more lines).
const NOTED_MAX: usize = 1024;

/// Which malformed values were logged, so that each is logged once and not on every poll.
#[derive(Debug, Default)]
pub(crate) struct Noted(Mutex<HashSet<String>>);

impl Noted {
    /// True the first time `what` is seen (and while fewer than [`NOTED_MAX`] were).
    fn first(&self, what: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.len() < NOTED_MAX && seen.insert(what.to_string())
    }
}

/// Bytes from Redis as a log line may show them: escaped, at most 100 bytes.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(100)];
    let more = if cut.len() < bytes.len() { "..." } else { "" };
    format!("{}{more}", cut.escape_ascii())
}

/// The Redis store as the state store's [`Backend`](crate::state::backend::Backend).
#[derive(Debug, Clone)]
pub struct RedisBackend(pub Arc<RedisStore>);

#[async_trait::async_trait]
impl crate::state::backend::Backend for RedisBackend {
    fn shares_sessions(&self) -> bool {
        true
    }

    fn start(&self) {
        self.0.connect();
    }

    fn reachable(&self) -> bool {
        self.0.is_up()
    }

    async fn prepare(&self, snap: &crate::balancer::Snapshot, balancer: usize, key: SessionKey) {
        self.0.prepare(snap, balancer, key).await;
    }

    fn remember(
        &self,
        snap: &crate::balancer::Snapshot,
        decision: &crate::balancer::Decision,
        session: u128,
    ) {
        let lb = &snap.balancers[decision.balancer];
        let Some(store) = &lb.sessions else {
            return;
        };
        let home = decision
            .key
            .is_some_and(|k| crate::balancer::route::is_first_choice(snap, lb, k, decision.target));
        let pinned = Pinned {
            session,
            endpoint: snap.endpoint(decision.target).id,
            new: decision.outcome == crate::balancer::Outcome::New,
            home,
        };
        self.0.remember(&lb.name, lb.affinity.ttl, store, pinned);
    }

    fn drain_changed(&self, pool: &str, name: &str, since: Option<u64>) {
        self.0.drain_changed(pool, name, since);
    }

    async fn poll(
        &self,
        snap: &crate::balancer::Snapshot,
        budget: Duration,
    ) -> Option<crate::state::backend::SharedDrains> {
        self.0.poll(snap, budget).await
    }

    fn poll_budget(&self) -> Duration {
        self.0.timeout()
    }

    fn cert_store(&self) -> Option<Arc<dyn crate::state::certs::CertStore>> {
        Some(Arc::new(certs::RedisCerts(self.0.clone())))
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "store": "redis",
            "address": self.0.address(),
            "reachable": self.0.is_up(),
        })
    }
}

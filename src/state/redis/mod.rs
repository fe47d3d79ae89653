//! The Redis store (`state.store: redis`, SPEC §5): header sessions and admin drains shared by
//! every instance that uses the same Redis.
//!
//! Layout under `key_prefix`:
//! - `session:<balancer>:<session id hex>` → endpoint id, with the idle TTL as Redis TTL;
//! - `drains` → a hash `<pool>/<endpoint>` → unix second the admin drain began;
//! - `epoch` → a random value written once into an empty Redis: when it changes or vanishes,
//!   Redis lost its data (a restart without persistence) and each instance writes its drains back.
//!
//! Requests read a session from Redis at most once per [`REFRESH`] (the local copy answers in
//! between) and never wait longer than `timeout_ms`; while Redis is unreachable they do not ask
//! it at all. Drains are polled every [`POLL`], so a drain made on any instance applies on
//! every other within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::affinity::header_key::session_key;
use crate::affinity::sessions::SessionStore;
use crate::affinity::EndpointId;
use crate::balancer::{RequestFacts, Snapshot};
use crate::config::RedisSection;

use super::metrics;

mod drains;

pub use drains::apply_drains;

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
    async fn run<T: redis::FromRedisValue>(
        &self,
        budget: Duration,
        f: impl FnOnce(ConnectionManager) -> redis::RedisFuture<'static, T>,
    ) -> Result<T, StoreError> {
        let Some(conn) = self.conn.get().cloned() else {
            return Err(StoreError("not connected yet".into()));
        };
        let result = match tokio::time::timeout(budget, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
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

    /// Makes the local copy of the request's header session current before routing: kept when
    /// confirmed within [`REFRESH`]; otherwise read from Redis (refreshing its TTL in the same
    /// round trip). When Redis cannot be asked, the copy this instance last knew is used; a
    /// session it never knew is routed by consistent hashing of its key, the endpoint a new
    /// session would get on any instance (SPEC §5). A session this instance knows and Redis
    /// lost (a restart without persistence, pins made during an outage) is written back.
    pub async fn prepare(self: &Arc<Self>, snap: &Snapshot, facts: &RequestFacts<'_>) {
        let Some(b) = snap.balancer_for_host(facts.host) else {
            return;
        };
        let lb = &snap.balancers[b];
        let Some(store) = &lb.sessions else {
            return;
        };
        let a = &lb.affinity;
        let Some(key) = session_key(
            &a.headers,
            facts.headers,
            facts.cookies,
            a.require_all_headers,
        ) else {
            return;
        };
        let now = self.clock_ms();
        let local = store.get_pin(key.id);
        if let Some(pin) = local {
            if pin.synced_ms != 0 && now.saturating_sub(pin.synced_ms) < REFRESH.as_millis() as u64
            {
                return;
            }
        }
        if !self.is_up() {
            return;
        }
        let rkey = self.session_key(&lb.name, key.id);
        let ttl = a.ttl;
        let read = self
            .run(self.timeout, {
                let rkey = rkey.clone();
                move |mut c| {
                    Box::pin(async move {
                        redis::cmd("GETEX")
                            .arg(rkey)
                            .arg("EX")
                            .arg(ttl)
                            .query_async::<Option<u64>>(&mut c)
                            .await
                    })
                }
            })
            .await;
        match (read, local) {
            (Ok(Some(endpoint)), _) => store.pin_synced(key.id, EndpointId(endpoint), now),
            (Ok(None), Some(pin)) => {
                store.pin_synced(key.id, pin.endpoint, now);
                self.write_session(rkey, pin.endpoint, ttl, true);
            }
            (Ok(None), None) | (Err(_), _) => {}
        }
    }

    /// Pins a header session here and writes it to Redis in the background (never waited for);
    /// a `new` session only if no instance wrote one meanwhile (`SET NX`). While Redis is
    /// unreachable the pin is kept here only, and written back once Redis answers again.
    pub fn remember(
        self: &Arc<Self>,
        balancer: &str,
        ttl: u64,
        store: &SessionStore,
        session: u128,
        endpoint: EndpointId,
        new: bool,
    ) {
        if !self.is_up() {
            store.pin(session, endpoint);
            return;
        }
        store.pin_synced(session, endpoint, self.clock_ms());
        self.write_session(self.session_key(balancer, session), endpoint, ttl, new);
    }

    /// `SET key endpoint EX ttl [NX]` in the background.
    fn write_session(self: &Arc<Self>, key: String, endpoint: EndpointId, ttl: u64, nx: bool) {
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me
                .run(me.timeout, move |mut c| {
                    Box::pin(async move {
                        let mut set = redis::cmd("SET");
                        set.arg(key).arg(endpoint.0).arg("EX").arg(ttl);
                        if nx {
                            set.arg("NX");
                        }
                        // NX answers nil when the key exists: not an error.
                        set.query_async::<Option<String>>(&mut c).await.map(drop)
                    })
                })
                .await;
        });
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

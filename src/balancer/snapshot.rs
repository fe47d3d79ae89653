//! The compiled, immutable form of a validated config that every request reads: balancers by
//! Host, pools with their endpoints' addresses and runtime state, cookie keys. A reload builds a
//! new one and swaps it in whole; a request never sees half of each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::state::EndpointState;

use crate::affinity::cookies::CookieAttributes;
use crate::affinity::header_key::SessionIds;
use crate::affinity::sessions::SessionStore;
use crate::affinity::token::CookieKeys;
use crate::affinity::EndpointId;
use crate::config::{
    Affinity, Config, Failover, MonitorSpec, RetryStatuses, SessionHeader, SteeringPolicy,
    TypedBalancer, TypedPool, Validated,
};
use crate::telemetry::metrics::BalancerCounters;
use crate::tls::listener_certs::ListenerCerts;
use crate::tls::origin::Origin;

pub use super::endpoint::{Endpoint, EndpointRef};
use super::state::RuntimeState;
use super::steering::{self, Steering};

/// A pool of endpoints.
#[derive(Debug)]
pub struct Pool {
    pub id: String,
    pub endpoints: Vec<Endpoint>,
    pub minimum_origins: usize,
    pub steering: Box<dyn Steering>,
    /// The pool's health monitor; `None` = every enabled endpoint counts as healthy.
    pub monitor: Option<Arc<MonitorSpec>>,
}

impl Pool {
    /// At least `minimum_origins` endpoints are healthy and enabled (SPEC §3.6).
    /// Stops counting at `minimum_origins`: with the default of 1 a healthy pool answers after
    /// its first endpoint, whatever its size.
    pub fn eligible(&self) -> bool {
        let healthy = self
            .endpoints
            .iter()
            .filter(|e| e.enabled_now() && e.healthy())
            .take(self.minimum_origins)
            .count();
        healthy >= self.minimum_origins
    }
}

/// How a balancer pins sessions.
#[derive(Debug)]
pub struct AffinityPolicy {
    /// The mode; `balancer::pinning::for_mode` gives its behaviour.
    pub mode: Affinity,
    /// Cookie lifetime, or the idle TTL of a header session, in seconds.
    pub ttl: u64,
    pub cookie: CookieAttributes,
    pub drain_duration: u64,
    pub failover: Failover,
    pub failover_across_pools: bool,
    pub headers: Vec<SessionHeader>,
    pub require_all_headers: bool,
    pub max_sessions: u64,
}

/// A load balancer: the pools it steers over and its affinity policy.
#[derive(Debug)]
pub struct Balancer {
    pub name: String,
    /// `default_pools`, as indices into [`Snapshot::pools`].
    pub pools: Vec<usize>,
    pub fallback: usize,
    pub steering: SteeringPolicy,
    pub always_use_https: bool,
    pub affinity: AffinityPolicy,
    /// Answers retried once on another endpoint (`retry_on_status`, SPEC §3.9).
    pub retry_on: RetryStatuses,
    /// Every endpoint reachable from this balancer, by the id a cookie or session names.
    pub by_id: HashMap<EndpointId, EndpointRef>,
    /// The header-session store, in `header` mode; it outlives the snapshot.
    pub sessions: Option<Arc<SessionStore>>,
    /// Its request counters, made when the snapshot is committed.
    pub counters: Option<BalancerCounters>,
}

/// The immutable routing view of one config.
#[derive(Debug)]
pub struct Snapshot {
    pub balancers: Vec<Balancer>,
    pub pools: Vec<Pool>,
    exact: HashMap<String, usize>,
    wildcard: Option<usize>,
    pub keys: CookieKeys,
    /// Header session ids keyed under the first of `keys`, prepared once for every request.
    pub session_ids: SessionIds,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Each TLS listener's certificates by address, as validation read them from disk.
    listener_certs: Vec<(String, Arc<ListenerCerts>)>,
    /// The config it was built from, for status pages and reload diffs.
    pub config: Config,
    /// The config's warnings (`config::Validated::warnings`), so a reload can tell new ones.
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Compiles a validated config. Pure: every endpoint gets a fresh state and no balancer a
    /// session store yet; [`super::state::Registry::adopt`] swaps in the states that outlive snapshots
    /// when the snapshot is committed. `fallback_keys` sign cookies when the file sets no
    /// `cookie_secret`.
    pub fn compile(valid: Validated, fallback_keys: &CookieKeys) -> Snapshot {
        let Validated {
            file: config,
            monitors: typed_monitors,
            pools: typed_pools,
            balancers: typed_balancers,
            trusted_proxies,
            listener_certs: typed_listener_certs,
            warnings,
        } = valid;
        let keys = match &config.cookie_secret {
            Some(secrets) => {
                let raw: Vec<&str> = secrets.as_slice().iter().map(|s| s.expose()).collect();
                CookieKeys::new(&raw)
            }
            None => fallback_keys.clone(),
        };

        let monitors: Vec<Arc<MonitorSpec>> = typed_monitors.into_iter().map(Arc::new).collect();
        let pools: Vec<Pool> = typed_pools
            .iter()
            .map(|p| compile_pool(p, &monitors))
            .collect();
        let mut balancers = Vec::with_capacity(typed_balancers.len());
        let mut exact = HashMap::new();
        let mut wildcard = None;
        for (bi, typed) in typed_balancers.into_iter().enumerate() {
            if typed.name == "*" {
                wildcard = Some(bi);
            } else {
                exact.insert(typed.name.trim_end_matches('.').to_string(), bi);
            }
            balancers.push(compile_balancer(typed, &pools));
        }
        Snapshot {
            balancers,
            pools,
            exact,
            wildcard,
            session_ids: keys.session_ids(),
            keys,
            trusted_proxies,
            listener_certs: ListenerCerts::by_address(&config.listeners, typed_listener_certs),
            config,
            warnings,
        }
    }

    /// Compiles `valid` and adopts `runtime`'s state into it at `now`, as a commit does; for
    /// tests and benchmarks, which have no [`crate::instance::Instance`].
    pub fn build(valid: Validated, runtime: &RuntimeState, now: u64) -> Snapshot {
        let mut snap = Snapshot::compile(valid, &runtime.random_keys);
        runtime.lock().adopt(&mut snap, now);
        snap
    }

    /// Every TLS listener's certificates as this config loaded them, by address.
    pub fn all_listener_certs(&self) -> &[(String, Arc<ListenerCerts>)] {
        &self.listener_certs
    }

    /// The balancer for a `Host` value: exact name (case-insensitive, port ignored), else `"*"`.
    pub fn balancer_for_host(&self, host: &str) -> Option<usize> {
        if self.exact.is_empty() {
            return self.wildcard;
        }
        let name = host_name(host);
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact.get(&name.to_ascii_lowercase())
        } else {
            self.exact.get(name)
        };
        found.copied().or(self.wildcard)
    }

    /// The endpoint at `r`.
    pub fn endpoint(&self, r: EndpointRef) -> &Endpoint {
        &self.pools[r.pool].endpoints[r.endpoint]
    }

    /// Where the pool with id `pool` is in `pools`.
    pub fn pool_index(&self, pool: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.id == pool)
    }

    /// The endpoint `name` of pool `pool`, as operators and stored state name it (the admin
    /// API, the state file, the hand-over, Redis).
    pub fn endpoint_named(&self, pool: &str, name: &str) -> Option<&Endpoint> {
        self.pools[self.pool_index(pool)?]
            .endpoints
            .iter()
            .find(|e| e.name == name)
    }

    /// True when `ip` is inside `trusted_proxies`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// The host part of a `Host` header: without the port, brackets or a trailing dot.
pub fn host_name(host: &str) -> &str {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.trim_end_matches('.')
}

/// Fresh runtime state for a compiled endpoint, its addresses seeded from validation (the IP
/// literal, or the name's lookup); a commit replaces it with the surviving endpoint's state.
fn seeded_state(addr: &crate::config::OriginAddr) -> Arc<EndpointState> {
    let state = Arc::new(EndpointState::default());
    state
        .addresses
        .adopt(addr.as_str(), addr.all(), crate::clock::unix_now());
    state
}

/// One pool of the config, compiled: its endpoints with fresh runtime state (adopted at commit),
/// its steering policy over their weights, and its monitor.
fn compile_pool(p: &TypedPool, monitors: &[Arc<MonitorSpec>]) -> Pool {
    let endpoints: Vec<Endpoint> = p
        .endpoints
        .iter()
        .map(|e| Endpoint {
            name: e.name.clone(),
            id: EndpointId::of(&p.id, &e.name),
            addr: e.addr.clone(),
            weight: e.weight,
            enabled: e.enabled,
            host: e.host.clone(),
            origin: Origin::compile(&e.tls),
            label: format!("{}/{}", p.id, e.name),
            state: seeded_state(&e.addr),
        })
        .collect();
    let weights: Vec<f64> = endpoints.iter().map(|e| e.weight).collect();
    Pool {
        id: p.id.clone(),
        endpoints,
        minimum_origins: p.minimum_origins,
        steering: steering::policy(p.policy, &weights),
        monitor: p.monitor.map(|m| monitors[m].clone()),
    }
}

/// One load balancer of the config, compiled over the compiled `pools`: its affinity policy and
/// the endpoints its cookies may name, by id. No session store or counters yet (commit adds
/// them).
fn compile_balancer(typed: TypedBalancer, pools: &[Pool]) -> Balancer {
    let mut by_id = HashMap::new();
    for &pi in typed.default_pools.iter().chain([&typed.fallback]) {
        for (ei, e) in pools[pi].endpoints.iter().enumerate() {
            by_id.insert(
                e.id,
                EndpointRef {
                    pool: pi,
                    endpoint: ei,
                },
            );
        }
    }
    Balancer {
        name: typed.name,
        pools: typed.default_pools,
        fallback: typed.fallback,
        steering: typed.steering,
        always_use_https: typed.always_use_https,
        affinity: AffinityPolicy {
            mode: typed.mode,
            ttl: typed.ttl,
            cookie: CookieAttributes {
                secure: typed.secure,
                samesite: typed.samesite,
                always_use_https: typed.always_use_https,
            },
            drain_duration: typed.drain_duration,
            failover: typed.failover,
            failover_across_pools: typed.failover_across_pools,
            headers: typed.session_headers,
            require_all_headers: typed.require_all_headers,
            max_sessions: typed.max_sessions,
        },
        retry_on: typed.retry_on,
        by_id,
        sessions: None,
        counters: None,
    }
}

//! The compiled, immutable form of a validated config that every request reads: balancers by
//! Host, pools with their endpoints' addresses and runtime state, cookie keys. A reload builds a
//! new one and swaps it in whole; a request never sees half of each.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::affinity::cookies::CookieAttributes;
use crate::affinity::sessions::SessionStore;
use crate::affinity::token::CookieKeys;
use crate::affinity::EndpointId;
use crate::config::{
    parse_cidr, resolve_address, Affinity, Config, ConfigError, ConfigErrors, Failover,
    SessionHeader, SteeringPolicy,
};

use super::monitor::MonitorSpec;
use super::state::{EndpointState, Lifecycle, RuntimeState, SessionNeed};
use super::steering::{self, Steering};

/// Where an endpoint sits in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointRef {
    pub pool: usize,
    pub endpoint: usize,
}

/// One endpoint with everything the request path needs precomputed.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub id: EndpointId,
    pub addr: SocketAddr,
    pub weight: f64,
    /// `enabled` as the file says; a runtime drain lives in `state`.
    pub enabled: bool,
    /// The `Host` to send upstream instead of the client's.
    pub host: Option<String>,
    /// `pool/name`, for logs.
    pub label: String,
    pub state: Arc<EndpointState>,
}

impl Endpoint {
    /// Enabled in the file and not drained at runtime.
    pub fn enabled_now(&self) -> bool {
        self.enabled && !self.state.admin_drained()
    }

    /// Serving, draining or drained, given the balancer's drain duration.
    pub fn lifecycle(&self, drain_duration: u64, now: u64) -> Lifecycle {
        self.state
            .lifecycle(self.enabled_now(), drain_duration, now)
    }

    /// May take a new session: healthy, enabled, and with weight.
    pub fn takes_new(&self) -> bool {
        self.enabled_now() && self.state.healthy() && self.weight > 0.0
    }
}

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
            .filter(|e| e.enabled_now() && e.state.healthy())
            .take(self.minimum_origins)
            .count();
        healthy >= self.minimum_origins
    }
}

/// How a balancer pins sessions.
#[derive(Debug)]
pub struct AffinityPolicy {
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
    /// Every endpoint reachable from this balancer, by the id a cookie or session names.
    pub pins: HashMap<EndpointId, EndpointRef>,
    /// The header-session store, in `header` mode; it outlives the snapshot.
    pub sessions: Option<Arc<SessionStore>>,
}

/// The immutable routing view of one config.
#[derive(Debug)]
pub struct Snapshot {
    pub balancers: Vec<Balancer>,
    pub pools: Vec<Pool>,
    exact: HashMap<String, usize>,
    wildcard: Option<usize>,
    pub keys: CookieKeys,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The config it was built from, for status pages and reload diffs.
    pub config: Config,
}

impl Snapshot {
    /// Builds a snapshot, attaching the runtime state of endpoints that already exist.
    pub fn build(
        config: Config,
        runtime: &RuntimeState,
        now: u64,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errs = Vec::new();
        let keys = match &config.cookie_secret {
            Some(secrets) => {
                let raw: Vec<&str> = secrets.as_slice().iter().map(|s| s.expose()).collect();
                for (i, s) in raw.iter().enumerate() {
                    if s.len() < 32 {
                        log::warn!(
                            "{} is {} bytes; 32 or more are recommended",
                            secrets.path(i),
                            s.len()
                        );
                    }
                }
                CookieKeys::new(&raw)
            }
            None => runtime.random_keys.clone(),
        };

        let ids: Vec<(String, String)> = config
            .pools
            .iter()
            .flat_map(|p| {
                p.endpoints
                    .iter()
                    .map(|e| (p.pool.id.clone(), e.name.clone()))
            })
            .collect();
        let mut states = runtime.attach(&ids).into_iter();

        let monitors: HashMap<&str, Arc<MonitorSpec>> = config
            .monitors
            .iter()
            .map(|m| (m.id.as_str(), Arc::new(MonitorSpec::compile(m))))
            .collect();
        let mut pools = Vec::with_capacity(config.pools.len());
        let mut pool_index = HashMap::new();
        for (pi, p) in config.pools.iter().enumerate() {
            let mut endpoints = Vec::with_capacity(p.endpoints.len());
            for (ei, e) in p.endpoints.iter().enumerate() {
                let state = states.next().expect("one state per endpoint");
                let addr = match resolve_address(&e.address) {
                    Ok(a) => a,
                    Err(reason) => {
                        let path = format!("pools[{pi}].endpoints[{ei}].address");
                        errs.push(ConfigError::invalid(path, &e.address, reason));
                        continue;
                    }
                };
                state.sync_enabled(e.enabled && !state.admin_drained(), now);
                let host = e
                    .header
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("host"));
                endpoints.push(Endpoint {
                    name: e.name.clone(),
                    id: EndpointId::of(&p.pool.id, &e.name),
                    addr,
                    weight: e.weight,
                    enabled: e.enabled,
                    host: host.and_then(|(_, v)| v.first().cloned()),
                    label: format!("{}/{}", p.pool.id, e.name),
                    state,
                });
            }
            pool_index.insert(p.pool.id.clone(), pi);
            let weights: Vec<f64> = endpoints.iter().map(|e| e.weight).collect();
            pools.push(Pool {
                id: p.pool.id.clone(),
                endpoints,
                minimum_origins: p.pool.minimum_origins,
                steering: steering::policy(p.pool.origin_steering.policy, &weights),
                monitor: p
                    .pool
                    .monitor
                    .as_deref()
                    .and_then(|id| monitors.get(id).cloned()),
            });
        }

        let mut balancers = Vec::with_capacity(config.load_balancers.len());
        let mut exact = HashMap::new();
        let mut wildcard = None;
        for (bi, lb) in config.load_balancers.iter().enumerate() {
            let pool_of = |id: &String| pool_index[id.as_str()];
            let default: Vec<usize> = lb.default_pools.iter().map(pool_of).collect();
            let fallback = lb
                .fallback_pool
                .as_ref()
                .map(pool_of)
                .unwrap_or(default[default.len() - 1]);
            let mut pins = HashMap::new();
            for &pi in default.iter().chain(std::iter::once(&fallback)) {
                for (ei, e) in pools[pi].endpoints.iter().enumerate() {
                    pins.insert(
                        e.id,
                        EndpointRef {
                            pool: pi,
                            endpoint: ei,
                        },
                    );
                }
            }
            let attrs = &lb.session_affinity_attributes;
            // SPEC §2 defaults: 23 h for cookie sessions, 30 min idle for header sessions.
            let default_ttl = match lb.session_affinity {
                Affinity::Header => 1800,
                _ => 82_800,
            };
            let name = lb.name.to_ascii_lowercase();
            if name == "*" {
                wildcard = Some(bi);
            } else {
                exact.insert(name.trim_end_matches('.').to_string(), bi);
            }
            balancers.push(Balancer {
                name,
                pools: default,
                fallback,
                steering: lb.steering_policy,
                always_use_https: lb.always_use_https,
                affinity: AffinityPolicy {
                    mode: lb.session_affinity,
                    ttl: lb.session_affinity_ttl.unwrap_or(default_ttl),
                    cookie: CookieAttributes {
                        secure: attrs.secure,
                        samesite: attrs.samesite,
                        always_use_https: lb.always_use_https,
                    },
                    drain_duration: attrs.drain_duration,
                    failover: attrs.zero_downtime_failover,
                    failover_across_pools: lb.adaptive_routing.failover_across_pools,
                    headers: attrs
                        .headers
                        .iter()
                        .filter_map(|h| SessionHeader::parse(h).ok())
                        .collect(),
                    require_all_headers: attrs.require_all_headers,
                    max_sessions: lb.max_sessions,
                },
                pins,
                sessions: None,
            });
        }
        let needs: Vec<SessionNeed> = balancers
            .iter()
            .filter(|b| b.affinity.mode == Affinity::Header)
            .map(|b| SessionNeed {
                balancer: b.name.clone(),
                ttl: std::time::Duration::from_secs(b.affinity.ttl),
                capacity: b.affinity.max_sessions,
            })
            .collect();
        let mut stores = runtime.attach_sessions(&needs).into_iter();
        for b in balancers
            .iter_mut()
            .filter(|b| b.affinity.mode == Affinity::Header)
        {
            b.sessions = stores.next();
        }
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .filter_map(|c| parse_cidr(c))
            .collect();
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(Snapshot {
            balancers,
            pools,
            exact,
            wildcard,
            keys,
            trusted_proxies,
            config,
        })
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

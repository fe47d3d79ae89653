//! The state of the running instance as the admin API shows it: one view, built from the live
//! snapshot, that `GET /status` serialises as JSON and `GET /` renders as HTML. Runtime drain
//! and undrain live here too, because their answer is an endpoint's new state.

use serde_json::{json, Value};

use crate::balancer::{Endpoint, Lifecycle, Snapshot};

/// One endpoint's state at one moment.
#[derive(Debug, Clone)]
pub struct EndpointView {
    pub pool: String,
    pub name: String,
    /// `address` as written (`host:port` or an IP literal).
    pub address: String,
    /// Where it is reached now, in the order tried (SPEC §3.10); empty while a name has never
    /// resolved.
    pub addresses: Vec<std::net::SocketAddr>,
    /// Unix seconds of the lookup that found `addresses`; `None` for an IP literal.
    pub resolved_at: Option<u64>,
    pub weight: f64,
    pub healthy: bool,
    /// What the last health check found (`None` before the first check).
    pub health_reason: Option<String>,
    /// Takes new sessions: enabled in the file and not drained through the admin API.
    pub enabled: bool,
    /// Drained through the admin API (survives reloads until undrained).
    pub admin_drained: bool,
    /// "serving", "draining" or "drained".
    pub state: &'static str,
    /// Seconds until a draining endpoint's sessions are re-pinned.
    pub drain_remaining: Option<u64>,
    pub inflight: usize,
    pub requests: u64,
    /// Requests reach the endpoint over TLS.
    pub tls: bool,
    /// The origin's certificate is checked; `false` accepts any (shown so nobody has to read
    /// the file to find an origin that is not authenticated).
    pub verify: bool,
    /// The server name sent and checked (an IP literal: none sent, the address checked).
    pub sni: String,
}

/// The longest `drain_duration` among the balancers that route to pool `pool`: sessions pinned
/// through any of them may still reach a draining endpoint until then.
fn drain_duration(snap: &Snapshot, pool: usize) -> u64 {
    snap.balancers
        .iter()
        .filter(|b| b.pools.contains(&pool) || b.fallback == pool)
        .map(|b| b.affinity.drain_duration)
        .max()
        .unwrap_or(0)
}

/// The view of `e` (in pool `pool` of `snap`) at unix time `now`.
pub fn endpoint_view(snap: &Snapshot, pool: usize, e: &Endpoint, now: u64) -> EndpointView {
    use std::sync::atomic::Ordering::Relaxed;
    let (state, drain_remaining) = match e.lifecycle(drain_duration(snap, pool), now) {
        Lifecycle::Serving => ("serving", None),
        Lifecycle::Draining { remaining } => ("draining", Some(remaining)),
        Lifecycle::Drained => ("drained", None),
    };
    let now_at = e.state.addresses.load();
    EndpointView {
        pool: snap.pools[pool].id.clone(),
        name: e.name.clone(),
        address: e.addr.as_str().to_string(),
        addresses: now_at.as_ref().map(|a| a.list.clone()).unwrap_or_default(),
        resolved_at: now_at.and_then(|a| a.resolved_at),
        weight: e.weight,
        healthy: e.healthy(),
        health_reason: e.state.reason(),
        enabled: e.enabled_now(),
        admin_drained: e.state.admin_drained(),
        state,
        drain_remaining,
        inflight: e.state.inflight.load(Relaxed),
        requests: e.state.requests.load(Relaxed),
        tls: e.origin.is_tls(),
        verify: e.origin.verify(),
        sni: e.origin.sni().to_string(),
    }
}

impl EndpointView {
    /// The JSON object `GET /status` lists and drain/undrain answer with.
    pub fn to_json(&self) -> Value {
        json!({
            "pool": self.pool,
            "name": self.name,
            "address": self.address,
            "addresses": self.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "resolved_at": self.resolved_at,
            "weight": self.weight,
            "healthy": self.healthy,
            "health_reason": self.health_reason,
            "enabled": self.enabled,
            "admin_drained": self.admin_drained,
            "state": self.state,
            "drain_remaining_seconds": self.drain_remaining,
            "inflight": self.inflight,
            "requests": self.requests,
            "tls": { "enabled": self.tls, "verify": self.verify, "sni": self.sni },
        })
    }
}

/// Every pool's endpoints, in config order.
pub fn pools(snap: &Snapshot, now: u64) -> Vec<(usize, Vec<EndpointView>)> {
    snap.pools
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let eps = p
                .endpoints
                .iter()
                .map(|e| endpoint_view(snap, pi, e, now))
                .collect();
            (pi, eps)
        })
        .collect()
}

/// The whole `GET /status` document.
pub fn status_json(snap: &Snapshot, now: u64) -> Value {
    let retries = crate::telemetry::metrics::retries_by_balancer();
    let balancers: Vec<Value> = snap
        .balancers
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "default_pools": b.pools.iter().map(|&p| &snap.pools[p].id).collect::<Vec<_>>(),
                "fallback_pool": snap.pools[b.fallback].id,
                "session_affinity": b.affinity.mode.as_str(),
                "always_use_https": b.always_use_https,
                "drain_duration": b.affinity.drain_duration,
                "retry_on_status": b.retry_on.to_vec(),
                "retries": retries.get(&b.name).copied().unwrap_or(0),
            })
        })
        .collect();
    let pools: Vec<Value> = pools(snap, now)
        .into_iter()
        .map(|(pi, eps)| {
            let p = &snap.pools[pi];
            json!({
                "id": p.id,
                "healthy": p.eligible(),
                "minimum_origins": p.minimum_origins,
                "endpoints": eps.iter().map(EndpointView::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "load_balancers": balancers, "pools": pools })
}

/// Why a drain or undrain could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFound {
    Pool,
    Endpoint,
}

/// Drains (`drain: true`) or undrains the endpoint `pool`/`name` at runtime and returns its new
/// state. The drain clock starts now (unless it already runs); an undrain returns the endpoint
/// to what the file says. The choice is kept across reloads while the endpoint exists.
pub fn set_drained(
    snap: &Snapshot,
    pool: &str,
    name: &str,
    drain: bool,
    now: u64,
) -> Result<EndpointView, NotFound> {
    let pi = snap.pool_index(pool).ok_or(NotFound::Pool)?;
    let e = snap.endpoint_named(pool, name).ok_or(NotFound::Endpoint)?;
    if drain {
        e.state.drain(now);
    } else {
        e.state.undrain(e.enabled, now);
    }
    log::info!(
        "{} {}/{} through the admin API",
        if drain { "drained" } else { "undrained" },
        pool,
        name
    );
    Ok(endpoint_view(snap, pi, e, now))
}

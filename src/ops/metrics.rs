//! Prometheus metrics for `GET /metrics` (SPEC §4). Every name starts with `tether_`.
//!
//! The request path must not take a lock: label lookups in a `prometheus` vector take its
//! read-write lock, so the counters of every (balancer, endpoint) a snapshot can route to are
//! looked up once per snapshot ([`RequestHandles`]) and then reached by index. Events that are
//! rare next to requests (failovers, health flips, reloads) use plain label lookups.

use std::sync::{Arc, LazyLock, Weak};

use arc_swap::ArcSwapOption;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::balancer::{Decision, Outcome, Snapshot};

/// Every `Outcome`, in declaration order, so `outcome as usize` indexes per-outcome counters.
const OUTCOME_COUNT: usize = 10;
const OUTCOMES: [Outcome; OUTCOME_COUNT] = [
    Outcome::Unpinned,
    Outcome::New,
    Outcome::Kept,
    Outcome::NoSession,
    Outcome::Expired,
    Outcome::Invalid,
    Outcome::Unhealthy,
    Outcome::Drained,
    Outcome::FailoverTemporary,
    Outcome::FailoverSticky,
];

/// Status classes as labels; index 0 is a request that got no response at all.
const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The label used where a request was answered by tether before a pool or endpoint was chosen.
const NONE: &str = "-";

/// Upstream latency buckets in seconds: 1 ms .. 30 s, dense where web requests usually fall.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    affinity: IntCounterVec,
    upstream_latency: HistogramVec,
    failovers: IntCounterVec,
    health_transitions: IntCounterVec,
    header_sessions: IntGaugeVec,
    reloads: IntCounterVec,
    refusals: IntCounterVec,
    endpoint_healthy: IntGaugeVec,
    endpoint_enabled: IntGaugeVec,
    endpoint_inflight: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(v.clone()))
        .expect("metric registered once");
    v
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(v.clone()))
        .expect("metric registered once");
    v
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let upstream_latency = HistogramVec::new(
        HistogramOpts::new(
            "tether_upstream_latency_seconds",
            "Time from sending a request upstream to its response header.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
        &["pool", "endpoint"],
    )
    .expect("valid metric definition");
    r.register(Box::new(upstream_latency.clone()))
        .expect("metric registered once");
    Metrics {
        requests: counter(
            &r,
            "tether_requests_total",
            "Requests answered, by balancer, pool, endpoint and status class.",
            &["balancer", "pool", "endpoint", "status"],
        ),
        affinity: counter(
            &r,
            "tether_affinity_outcomes_total",
            "What happened to each request's session (new, kept, expired, invalid, ...).",
            &["balancer", "outcome"],
        ),
        upstream_latency,
        failovers: counter(
            &r,
            "tether_failovers_total",
            "Zero-downtime failover retries, by balancer and mode (temporary, sticky).",
            &["balancer", "mode"],
        ),
        health_transitions: counter(
            &r,
            "tether_health_transitions_total",
            "Monitor verdict flips of an endpoint, by the state it flipped to.",
            &["pool", "endpoint", "to"],
        ),
        header_sessions: gauge(
            &r,
            "tether_header_sessions",
            "Header-affinity sessions currently kept, by balancer.",
            &["balancer"],
        ),
        reloads: counter(
            &r,
            "tether_config_reloads_total",
            "Configuration reloads (SIGHUP or POST /reload), by result (ok, failed).",
            &["result"],
        ),
        refusals: counter(
            &r,
            "tether_refused_requests_total",
            "Requests tether refused itself, by reason (SPEC 3.7).",
            &["reason"],
        ),
        endpoint_healthy: gauge(
            &r,
            "tether_endpoint_healthy",
            "1 while the endpoint's monitor says healthy.",
            &["pool", "endpoint"],
        ),
        endpoint_enabled: gauge(
            &r,
            "tether_endpoint_enabled",
            "1 while the endpoint takes new sessions (enabled in the file and not drained).",
            &["pool", "endpoint"],
        ),
        endpoint_inflight: gauge(
            &r,
            "tether_endpoint_inflight_requests",
            "Requests sent to the endpoint and not yet finished.",
            &["pool", "endpoint"],
        ),
        registry: r,
    }
});

/// Counters of one endpoint as reached through one balancer.
struct EndpointHandles {
    by_class: [IntCounter; 6],
    latency: prometheus::Histogram,
}

/// The counters one snapshot's requests touch, looked up once so recording is lock-free.
struct RequestHandles {
    /// The snapshot these were built for; a `Weak` keeps its address from being reused.
    snapshot: Weak<Snapshot>,
    /// `[balancer][pool][endpoint]`; `None` where the balancer cannot route to the endpoint.
    endpoints: Vec<Vec<Vec<Option<EndpointHandles>>>>,
    /// `[balancer][outcome as usize]`.
    outcomes: Vec<[IntCounter; OUTCOME_COUNT]>,
}

impl RequestHandles {
    fn build(snap: &Arc<Snapshot>) -> RequestHandles {
        let m = &*METRICS;
        let mut endpoints = Vec::with_capacity(snap.balancers.len());
        let mut outcomes = Vec::with_capacity(snap.balancers.len());
        for lb in &snap.balancers {
            let mut pools: Vec<Vec<Option<EndpointHandles>>> = snap
                .pools
                .iter()
                .map(|p| p.endpoints.iter().map(|_| None).collect())
                .collect();
            for r in lb.pins.values() {
                let pool = &snap.pools[r.pool];
                let ep = &pool.endpoints[r.endpoint];
                pools[r.pool][r.endpoint] = Some(EndpointHandles {
                    by_class: CLASSES.map(|c| {
                        m.requests
                            .with_label_values(&[&lb.name, &pool.id, &ep.name, c])
                    }),
                    latency: m.upstream_latency.with_label_values(&[&pool.id, &ep.name]),
                });
            }
            endpoints.push(pools);
            outcomes.push(OUTCOMES.map(|o| m.affinity.with_label_values(&[&lb.name, o.as_str()])));
        }
        RequestHandles {
            snapshot: Arc::downgrade(snap),
            endpoints,
            outcomes,
        }
    }

    fn is_for(&self, snap: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(snap))
    }
}

/// The handles of the most recent snapshot seen on the request path.
static HANDLES: ArcSwapOption<RequestHandles> = ArcSwapOption::const_empty();

/// The handles for `snap` when it is the one cached, or when it is the live one (the first
/// request after a reload builds them, a concurrent one may too, harmlessly); `None` for a
/// request that finished on a snapshot a reload has replaced, so it cannot evict the new one.
fn handles_for(snap: &Arc<Snapshot>, is_live: bool) -> Option<Arc<RequestHandles>> {
    if let Some(h) = HANDLES.load_full() {
        if h.is_for(snap) {
            return Some(h);
        }
    }
    if !is_live {
        return None;
    }
    let h = Arc::new(RequestHandles::build(snap));
    HANDLES.store(Some(h.clone()));
    Some(h)
}

/// The slow path for a request on a replaced snapshot: label lookups.
fn record_by_labels(snap: &Snapshot, d: &Decision, class: usize, done: &Finished<'_>) {
    let m = &*METRICS;
    let lb = &snap.balancers[d.balancer].name;
    let pool = &snap.pools[d.target.pool].id;
    let ep = &snap.endpoint(d.target).name;
    m.requests
        .with_label_values(&[lb.as_str(), pool, ep, CLASSES[class]])
        .inc();
    if let Some(t) = done.upstream {
        m.upstream_latency
            .with_label_values(&[pool.as_str(), ep])
            .observe(t.as_secs_f64());
    }
    m.affinity
        .with_label_values(&[lb.as_str(), d.outcome.as_str()])
        .inc();
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100),
        _ => 0,
    }
}

/// What one finished request contributes to the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The response status sent to the client, 0 when none was sent.
    pub status: u16,
    /// Time to the upstream's response header, when an upstream answered.
    pub upstream: Option<std::time::Duration>,
    /// The balancer that answered when no routing decision was made (404, 503, redirect).
    pub balancer_without_decision: Option<&'a str>,
    /// `snap` is still the live snapshot (no reload since the request began).
    pub snapshot_is_live: bool,
}

/// Counts a finished request: status class per endpoint, affinity outcome, upstream latency.
/// Lock-free for routed requests; requests tether answered itself, and requests that straddled
/// a reload, use label lookups.
pub fn record_request(snap: &Arc<Snapshot>, decision: Option<&Decision>, done: Finished<'_>) {
    let class = class_index(done.status);
    let Some(d) = decision else {
        let lb = done.balancer_without_decision.unwrap_or(NONE);
        METRICS
            .requests
            .with_label_values(&[lb, NONE, NONE, CLASSES[class]])
            .inc();
        return;
    };
    let Some(h) = handles_for(snap, done.snapshot_is_live) else {
        record_by_labels(snap, d, class, &done);
        return;
    };
    if let Some(Some(ep)) = h
        .endpoints
        .get(d.balancer)
        .and_then(|b| b.get(d.target.pool))
        .and_then(|p| p.get(d.target.endpoint))
    {
        ep.by_class[class].inc();
        if let Some(t) = done.upstream {
            ep.latency.observe(t.as_secs_f64());
        }
    }
    if let Some(o) = h.outcomes.get(d.balancer) {
        o[d.outcome as usize].inc();
    }
}

/// Counts one zero-downtime failover retry of `balancer` (`mode`: "temporary" or "sticky").
pub fn record_failover(balancer: &str, mode: &str) {
    METRICS.failovers.with_label_values(&[balancer, mode]).inc();
}

/// Counts a monitor verdict flip of `pool`/`endpoint` to `healthy` (true) or unhealthy.
pub fn record_health_transition(pool: &str, endpoint: &str, healthy: bool) {
    let to = if healthy { "healthy" } else { "unhealthy" };
    METRICS
        .health_transitions
        .with_label_values(&[pool, endpoint, to])
        .inc();
}

/// Sets the number of header-affinity sessions `balancer` currently keeps.
pub fn set_header_sessions(balancer: &str, n: i64) {
    METRICS
        .header_sessions
        .with_label_values(&[balancer])
        .set(n);
}

/// Counts a request tether refused itself (`reason`: e.g. "header-too-large", "malformed").
pub fn record_refusal(reason: &str) {
    METRICS.refusals.with_label_values(&[reason]).inc();
}

/// Counts a configuration reload by its result.
pub fn record_reload(ok: bool) {
    METRICS
        .reloads
        .with_label_values(&[if ok { "ok" } else { "failed" }])
        .inc();
}

/// The Prometheus text exposition of every metric, with the per-endpoint gauges taken from
/// `snap` at this moment (endpoints no longer configured disappear from them).
pub fn render(snap: &Snapshot) -> String {
    let m = &*METRICS;
    // Read at scrape time, so the request path never touches the gauge.
    for lb in &snap.balancers {
        if let Some(store) = &lb.sessions {
            store.sync();
            set_header_sessions(&lb.name, i64::try_from(store.len()).unwrap_or(i64::MAX));
        }
    }
    for g in [
        &m.endpoint_healthy,
        &m.endpoint_enabled,
        &m.endpoint_inflight,
    ] {
        g.reset();
    }
    for p in &snap.pools {
        for e in &p.endpoints {
            let labels = [p.id.as_str(), e.name.as_str()];
            m.endpoint_healthy
                .with_label_values(&labels)
                .set(i64::from(e.healthy()));
            m.endpoint_enabled
                .with_label_values(&labels)
                .set(i64::from(e.enabled_now()));
            let inflight = e.state.inflight.load(std::sync::atomic::Ordering::Relaxed);
            m.endpoint_inflight
                .with_label_values(&labels)
                .set(i64::try_from(inflight).unwrap_or(i64::MAX));
        }
    }
    // Make the reload counters visible at 0 before the first reload.
    for r in ["ok", "failed"] {
        m.reloads.with_label_values(&[r]);
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        log::error!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_table_matches_declaration_order() {
        for (i, o) in OUTCOMES.iter().enumerate() {
            assert_eq!(*o as usize, i, "{}", o.as_str());
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(CLASSES[class_index(0)], "none");
        assert_eq!(CLASSES[class_index(204)], "2xx");
        assert_eq!(CLASSES[class_index(301)], "3xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(999)], "none");
    }
}

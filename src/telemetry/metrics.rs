//! Prometheus metrics for `GET /metrics` (SPEC §4). Every name starts with `tether_`.
//!
//! The request path must not take a lock: label lookups in a `prometheus` vector take its
//! read-write lock, so the counters of every (balancer, endpoint) a snapshot can route to are
//! looked up once, when the snapshot is committed ([`BalancerCounters`], kept in the snapshot),
//! and then reached by index. Events that are rare next to requests (failovers, health flips,
//! reloads, refusals) use plain label lookups. Gauges are set at scrape time.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

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
    retries: IntCounterVec,
    health_transitions: IntCounterVec,
    header_sessions: IntGaugeVec,
    reloads: IntCounterVec,
    refusals: IntCounterVec,
    endpoint_healthy: IntGaugeVec,
    endpoint_enabled: IntGaugeVec,
    endpoint_inflight: IntGaugeVec,
    dns_lookups: IntCounterVec,
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
        retries: counter(
            &r,
            "tether_retries_total",
            "Answers retried on another endpoint, by balancer and reason (status_503, ...; SPEC 3.9).",
            &["balancer", "reason"],
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
            "Requests refused before anything was forwarded, by reason (SPEC 3.7); Pingora's own HTTP/1 parser refusals included.",
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
        dns_lookups: counter(
            &r,
            "tether_dns_lookups_total",
            "Lookups of endpoint host names by the resolver, by result (ok, failed).",
            &["result"],
        ),
        registry: r,
    }
});

/// Counters of one endpoint as reached through one balancer.
struct EndpointCounters {
    by_class: [IntCounter; 6],
    latency: Histogram,
}

/// The counters one balancer's requests touch, made when its snapshot is committed so that
/// counting a request is an index and an atomic add: no label lookup, no lock.
pub struct BalancerCounters {
    /// `[pool][endpoint]`; `None` where the balancer cannot route to the endpoint.
    endpoints: Vec<Vec<Option<EndpointCounters>>>,
    /// By outcome, in the order the outcome names were given.
    outcomes: Vec<IntCounter>,
    /// Requests the balancer answered itself (redirect, 503), by status class.
    answered: [IntCounter; 6],
}

impl std::fmt::Debug for BalancerCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BalancerCounters")
    }
}

impl BalancerCounters {
    /// The counters of `balancer`, whose sessions end in `outcomes`, over `endpoints`
    /// (`[pool][endpoint]`: the pool id and endpoint name where the balancer routes to it).
    pub fn new(balancer: &str, outcomes: &[&str], endpoints: &[Vec<Option<(&str, &str)>>]) -> Self {
        let m = &*METRICS;
        let endpoints = endpoints
            .iter()
            .map(|pool| {
                pool.iter()
                    .map(|labels| {
                        labels.map(|(pool, ep)| EndpointCounters {
                            by_class: CLASSES
                                .map(|c| m.requests.with_label_values(&[balancer, pool, ep, c])),
                            latency: m.upstream_latency.with_label_values(&[pool, ep]),
                        })
                    })
                    .collect()
            })
            .collect();
        BalancerCounters {
            endpoints,
            outcomes: outcomes
                .iter()
                .map(|o| m.affinity.with_label_values(&[balancer, o]))
                .collect(),
            answered: CLASSES.map(|c| m.requests.with_label_values(&[balancer, NONE, NONE, c])),
        }
    }

    /// Counts a request routed to endpoint `endpoint` of pool `pool` with session outcome
    /// `outcome` (its index), answered with `status` (0: none), the upstream's answer after
    /// `upstream`.
    pub fn routed(
        &self,
        (pool, endpoint): (usize, usize),
        outcome: usize,
        status: u16,
        upstream: Option<Duration>,
    ) {
        if let Some(Some(ep)) = self.endpoints.get(pool).and_then(|p| p.get(endpoint)) {
            ep.by_class[class_index(status)].inc();
            if let Some(t) = upstream {
                ep.latency.observe(t.as_secs_f64());
            }
        }
        if let Some(o) = self.outcomes.get(outcome) {
            o.inc();
        }
    }

    /// Counts a request the balancer answered itself with `status`.
    pub fn answered(&self, status: u16) {
        self.answered[class_index(status)].inc();
    }
}

/// Counts a request that no balancer answers (404), by `status`.
pub fn unrouted(status: u16) {
    static UNROUTED: LazyLock<[IntCounter; 6]> = LazyLock::new(|| {
        CLASSES.map(|c| METRICS.requests.with_label_values(&[NONE, NONE, NONE, c]))
    });
    UNROUTED[class_index(status)].inc();
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100),
        _ => 0,
    }
}

/// Counts one zero-downtime failover retry of `balancer` (`mode`: "temporary" or "sticky").
pub fn record_failover(balancer: &str, mode: &str) {
    METRICS.failovers.with_label_values(&[balancer, mode]).inc();
}

/// Counts one retry of an answer with `status` (listed in `retry_on_status`) by `balancer`,
/// under the reason `status_<status>`. A retry is rare next to requests: the label is formatted
/// here, off the path of requests that are not retried.
pub fn record_status_retry(balancer: &str, status: u16) {
    let reason = format!("status_{status}");
    METRICS
        .retries
        .with_label_values(&[balancer, &reason])
        .inc();
}

/// Retries of answers so far, summed over reasons, by balancer; for `/status` and the page
/// (a scrape's cost, never on the request path).
pub fn retries_by_balancer() -> std::collections::HashMap<String, u64> {
    use prometheus::core::Collector;
    let mut out = std::collections::HashMap::new();
    for family in METRICS.retries.collect() {
        for m in family.get_metric() {
            let balancer = m
                .get_label()
                .iter()
                .find(|l| l.name() == "balancer")
                .map(|l| l.value().to_string())
                .unwrap_or_default();
            *out.entry(balancer).or_insert(0) += m.get_counter().get_value() as u64;
        }
    }
    out
}

/// Counts one lookup of an endpoint host name by the resolver (SPEC §3.10).
pub fn record_dns_lookup(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    METRICS.dns_lookups.with_label_values(&[result]).inc();
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

/// Counts a refused request (`reason`: e.g. "header_too_large", "malformed"); refusals reach
/// it through `telemetry::refusals::refuse`, which logs them too.
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

/// One endpoint's state at scrape time, for the per-endpoint gauges.
#[derive(Debug, Clone, Copy)]
pub struct EndpointGauges<'a> {
    pub pool: &'a str,
    pub endpoint: &'a str,
    pub healthy: bool,
    pub enabled: bool,
    pub inflight: usize,
}

/// The Prometheus text exposition of every metric, with the gauges set from `endpoints` and
/// `sessions` (header sessions per balancer) as read at this moment; endpoints not listed
/// disappear from the gauges.
pub fn render<'a>(
    endpoints: impl IntoIterator<Item = EndpointGauges<'a>>,
    sessions: impl IntoIterator<Item = (&'a str, u64)>,
) -> String {
    let m = &*METRICS;
    for (balancer, n) in sessions {
        set_header_sessions(balancer, i64::try_from(n).unwrap_or(i64::MAX));
    }
    for g in [
        &m.endpoint_healthy,
        &m.endpoint_enabled,
        &m.endpoint_inflight,
    ] {
        g.reset();
    }
    for e in endpoints {
        let labels = [e.pool, e.endpoint];
        m.endpoint_healthy
            .with_label_values(&labels)
            .set(i64::from(e.healthy));
        m.endpoint_enabled
            .with_label_values(&labels)
            .set(i64::from(e.enabled));
        m.endpoint_inflight
            .with_label_values(&labels)
            .set(i64::try_from(e.inflight).unwrap_or(i64::MAX));
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

/// Every `tether_affinity_outcomes_total` series as (balancer, outcome) → count. Read by the
/// status page's sampler; a scrape's cost, never on the request path, and it creates no series.
pub fn affinity_counts() -> std::collections::HashMap<(String, String), u64> {
    use prometheus::core::Collector;
    let mut out = std::collections::HashMap::new();
    for family in METRICS.affinity.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            let value = m.get_counter().get_value() as u64;
            out.insert((label("balancer"), label("outcome")), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(CLASSES[class_index(0)], "none");
        assert_eq!(CLASSES[class_index(204)], "2xx");
        assert_eq!(CLASSES[class_index(301)], "3xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(999)], "none");
    }
}

//! The state store's own metrics (reported by `state::redis`), appended to `GET /metrics`: whether the store is reachable and
//! how many of its operations failed. Both always render, also while they are 0.

use std::sync::LazyLock;

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

struct StoreMetrics {
    registry: Registry,
    up: IntGauge,
    errors: IntCounter,
}

static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let up = IntGauge::new(
        "tether_state_store_up",
        "1 while the state store answers (always 1 for the embedded store), 0 during an outage.",
    )
    .expect("valid metric definition");
    let errors = IntCounter::new(
        "tether_state_store_errors_total",
        "State store operations that failed or timed out (tether failed open each time).",
    )
    .expect("valid metric definition");
    registry
        .register(Box::new(up.clone()))
        .expect("metric registered once");
    registry
        .register(Box::new(errors.clone()))
        .expect("metric registered once");
    up.set(1);
    StoreMetrics {
        registry,
        up,
        errors,
    }
});

/// Records whether the store is reachable.
pub fn set_up(up: bool) {
    METRICS.up.set(i64::from(up));
}

/// Counts one failed store operation.
pub fn record_error() {
    METRICS.errors.inc();
}

/// The Prometheus text of these metrics.
pub fn render() -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

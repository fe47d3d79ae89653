//! The listener certificates' metrics, appended to `GET /metrics` (SPEC §3.11): each served
//! name's expiry, set at scrape time from the certificate slots, and the ACME orders that
//! succeeded and failed. The counters always render, also while they are 0.

use std::sync::LazyLock;

use prometheus::{Encoder, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder};

struct CertMetrics {
    registry: Registry,
    expiry: IntGaugeVec,
    orders_failed: IntCounter,
    orders_ok: IntCounter,
}

static METRICS: LazyLock<CertMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let expiry = IntGaugeVec::new(
        Opts::new(
            "tether_certificate_expiry_timestamp_seconds",
            "When the certificate a TLS listener serves for this name expires (unix seconds).",
        ),
        &["name"],
    )
    .expect("valid metric definition");
    let orders_failed = IntCounter::new(
        "tether_acme_order_failures_total",
        "ACME orders that failed (the old certificate, if any, kept serving).",
    )
    .expect("valid metric definition");
    let orders_ok = IntCounter::new(
        "tether_acme_orders_total",
        "ACME orders that ended with a certificate.",
    )
    .expect("valid metric definition");
    for m in [
        Box::new(expiry.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(orders_failed.clone()),
        Box::new(orders_ok.clone()),
    ] {
        registry.register(m).expect("metric registered once");
    }
    CertMetrics {
        registry,
        expiry,
        orders_failed,
        orders_ok,
    }
});

/// Counts one failed ACME order.
pub fn order_failed() {
    METRICS.orders_failed.inc();
}

/// Counts one ACME order that ended with a certificate.
pub fn order_succeeded() {
    METRICS.orders_ok.inc();
}

/// The Prometheus text of these metrics, with `expiries` (name, unix seconds) as served now.
pub fn render<'a>(expiries: impl Iterator<Item = (&'a str, u64)>) -> String {
    METRICS.expiry.reset();
    for (name, not_after) in expiries {
        let at = i64::try_from(not_after).unwrap_or(i64::MAX);
        let g = METRICS.expiry.with_label_values(&[name]);
        // A name two listeners serve: the earlier expiry is the one an alert must catch.
        if g.get() == 0 || at < g.get() {
            g.set(at);
        }
    }
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

//! conf/grafana/tether.json queries only metrics that a running tether exposes on `/metrics`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::ops::admin;
use crate::common::*;
use serde_json::Value;

/// Every `expr` and variable query in the dashboard.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `tether_…` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tether_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let word_start =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if word_start {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

#[test]
fn every_metric_the_grafana_dashboard_queries_exists_in_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana/tether.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut qs = Vec::new();
    queries(&dashboard, &mut qs);
    let wanted: BTreeSet<String> = qs.iter().flat_map(|q| metric_names(q)).collect();
    for family in [
        "tether_requests_total",
        "tether_affinity_outcomes_total",
        "tether_failovers_total",
        "tether_endpoint_healthy",
        "tether_health_transitions_total",
        "tether_header_sessions",
        "tether_refused_requests_total",
    ] {
        assert!(
            wanted.contains(family),
            "the dashboard does not chart {family}"
        );
    }

    // A tether that has done everything the dashboard charts: proxied, pinned, failed over,
    // seen an endpoint turn unhealthy, kept a header session, refused a request, reloaded.
    let (a, b, sick) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("sick"),
    );
    sick.set_health(500);
    let admin_port = free_port();
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         monitors:\n  - {{ id: m, path: /health, interval: 3600, timeout: 2 }}\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}\
         \x20 - id: sick\n    monitor: m\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ zero_downtime_failover: temporary }}\n\
         \x20 - name: hdr.example\n    default_pools: [web]\n    session_affinity: header\n\
         \x20   session_affinity_attributes: {{ headers: [x-user], zero_downtime_failover: temporary }}\n\
         \x20 - name: sick.example\n    default_pools: [sick]\n",
        endpoints(&[&a, &b]),
        endpoints(&[&sick])
    ));
    for label in ["web/a", "web/b"] {
        wait_for("the first health check", Duration::from_secs(20), || {
            t.log().contains(&format!("{label} first check passed"))
        });
    }
    let c = client();
    assert_eq!(
        get(&c, &t.url("/"), Some("hdr.example"), &[("x-user", "7")]).status,
        200
    );
    let (cookie, mut pinned) = loop {
        let r = get(&c, &t.url("/"), None, &[]);
        if r.endpoint() == "a" {
            break (format!("__cflb={}", r.cflb().unwrap()), a);
        }
    };
    pinned.stop();
    assert_eq!(
        get(&c, &t.url("/"), None, &[("cookie", &cookie)]).endpoint(),
        "b"
    );
    let refused = raw_status(
        t.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(refused, Some(400));
    assert_eq!(admin(admin_port, "POST", "/reload", None).status, 200);
    wait_for("sick to turn unhealthy", Duration::from_secs(20), || {
        admin(admin_port, "GET", "/metrics", None)
            .body
            .contains("tether_health_transitions_total{")
    });

    let metrics = admin(admin_port, "GET", "/metrics", None).body;
    let exposed: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(metric_names)
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|m| !exposed.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "queried but not in /metrics: {missing:?}\n{metrics}"
    );
    drop(b);
}

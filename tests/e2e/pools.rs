//! SPEC §3.6 pools driven by real health checks (minimum_origins, fallback_pool, 503,
//! steering_policy) and the in-flight `origin_steering` policies, end to end.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;

const LONG: Duration = Duration::from_secs(20);
const MONITOR: &str = "monitors:\n  - { id: m, path: /health, interval: 1, timeout: 1 }\n";

fn endpoints_seen(t: &Tether, n: usize) -> HashSet<String> {
    let c = client();
    (0..n)
        .map(|_| get(&c, &t.url("/"), None, &[]).endpoint().to_string())
        .collect()
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn below_minimum_origins_new_sessions_go_to_the_next_pool() {
    let (a, b, s) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("s"),
    );
    let body = format!(
        "{MONITOR}pools:\n  - id: web\n    monitor: m\n    minimum_origins: 2\n    endpoints:\n{}\
         \x20 - id: spare\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web, spare]\n    session_affinity: cookie\n",
        endpoints(&[&a, &b]),
        endpoints(&[&s])
    );
    let t = Tether::start(&body);
    assert!(endpoints_seen(&t, 30).is_subset(&set(&["a", "b"])));
    a.set_health(503);
    wait_for("a to be unhealthy", LONG, || {
        t.log().contains("web/a unhealthy")
    });
    assert_eq!(
        endpoints_seen(&t, 20),
        set(&["s"]),
        "web has 1 of 2 healthy"
    );
}

#[test]
fn fallback_pool_then_503_when_nothing_is_healthy() {
    let (a, s) = (Upstream::start("a"), Upstream::start("s"));
    let body = format!(
        "{MONITOR}pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}\
         \x20 - id: spare\n    monitor: m\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    fallback_pool: spare\n",
        endpoints(&[&a]),
        endpoints(&[&s])
    );
    let t = Tether::start(&body);
    assert_eq!(endpoints_seen(&t, 10), set(&["a"]));
    a.set_health(503);
    wait_for("a to be unhealthy", LONG, || {
        t.log().contains("web/a unhealthy")
    });
    assert_eq!(
        endpoints_seen(&t, 10),
        set(&["s"]),
        "the fallback pool serves"
    );
    s.set_health(503);
    wait_for("s to be unhealthy", LONG, || {
        t.log().contains("spare/s unhealthy")
    });
    let r = get(&client(), &t.url("/"), None, &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.body, "no healthy endpoint is available\n");
    assert_eq!(
        a.request_count() + s.request_count(),
        20,
        "nothing forwarded"
    );
}

#[test]
fn random_steering_policy_spreads_new_sessions_over_pools() {
    let (p, q) = (Upstream::start("p"), Upstream::start("q"));
    let body = format!(
        "pools:\n  - id: one\n    endpoints:\n{}  - id: two\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [one, two]\n    steering_policy: random\n",
        endpoints(&[&p]),
        endpoints(&[&q])
    );
    let t = Tether::start(&body);
    assert_eq!(endpoints_seen(&t, 60), set(&["p", "q"]));
    let off = body.replace("steering_policy: random", "steering_policy: \"off\"");
    drop(t);
    let t = Tether::start(&off);
    assert_eq!(
        endpoints_seen(&t, 30),
        set(&["p"]),
        "off: the first pool in order"
    );
}

/// One slow request holds one endpoint; every new pick goes to the idle one.
fn busy_endpoint_gets_no_new_picks(policy: &str) {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "pools:\n  - id: web\n    origin_steering: {{ policy: {policy} }}\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&a, &b])
    );
    let t = Tether::start(&body);
    let url = t.url("/slow/4000");
    let slow = std::thread::spawn(move || get(&client(), &url, None, &[]));
    let busy = |u: &Upstream| u.requests().iter().any(|s| s.path == "/slow/4000");
    wait_for("the slow request to arrive", LONG, || busy(&a) || busy(&b));
    let idle = if busy(&a) { "b" } else { "a" };
    for _ in 0..20 {
        assert_eq!(
            get(&client(), &t.url("/"), None, &[]).endpoint(),
            idle,
            "{policy}"
        );
    }
    assert_eq!(slow.join().unwrap().status, 200);
}

#[test]
fn least_outstanding_requests_avoids_a_busy_endpoint() {
    busy_endpoint_gets_no_new_picks("least_outstanding_requests");
}

#[test]
fn least_connections_avoids_a_busy_endpoint() {
    busy_endpoint_gets_no_new_picks("least_connections");
}

//! SPEC §3.4 zero-downtime failover, end to end: an endpoint's listener closes while its monitor
//! (on a long interval) still calls it healthy.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;

/// A monitor that checks once at start and then not for an hour: every failure below happens
/// "between health checks", which is what zero-downtime failover is for.
const MONITOR: &str = "monitors:\n  - { id: m, path: /health, interval: 3600, timeout: 2 }\n";

fn start(mode: &str) -> (Tether, Upstream, Upstream) {
    start_with(mode, MONITOR)
}

fn start_with(mode: &str, monitor: &str) -> (Tether, Upstream, Upstream) {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "{monitor}pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ zero_downtime_failover: {mode} }}\n",
        endpoints(&[&a, &b])
    );
    let t = Tether::start(&body);
    checked(&t, &["web/a", "web/b"]);
    (t, a, b)
}

/// Waits for the monitor's first verdict on `labels`, so that a listener closed later is
/// closed "between health checks".
fn checked(t: &Tether, labels: &[&str]) {
    for l in labels {
        wait_for("the first health check", Duration::from_secs(20), || {
            t.log().contains(&format!("{l} first check passed"))
        });
    }
}

#[test]
fn none_failover_returns_502() {
    let (t, mut a, b) = start("none");
    let cookie = cookie_pinned_to(&t, "a");
    a.stop();
    let r = get(&client(), &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!(r.status, 502);
    assert_eq!(b.requests().iter().filter(|s| s.path == "/x").count(), 0);
}

#[test]
fn temporary_failover_keeps_cookie() {
    let (t, mut a, _b) = start("temporary");
    let cookie = cookie_pinned_to(&t, "a");
    let c = client();
    a.stop();
    for _ in 0..5 {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!((r.status, r.endpoint()), (200, "b"));
        assert!(
            r.set_cookies().is_empty(),
            "temporary leaves the cookie alone"
        );
    }
    assert!(t
        .log()
        .contains("web/a unreachable (ConnectRefused): failover-temporary retry on web/b"));
    assert!(t.log().contains("affinity=failover-temporary"));

    a.restart();
    let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "a"),
        "back home once a answers"
    );
}

#[test]
fn sticky_failover_repins() {
    let (t, mut a, _b) = start("sticky");
    let cookie = cookie_pinned_to(&t, "a");
    let c = client();
    a.stop();
    let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!((r.status, r.endpoint()), (200, "b"));
    let moved = format!("__cflb={}", r.cflb().expect("sticky re-pins"));
    a.restart();
    for _ in 0..5 {
        let r = get(&c, &t.url("/"), None, &[("cookie", &moved)]);
        assert_eq!((r.status, r.endpoint()), (200, "b"), "the new pin holds");
        assert!(r.set_cookies().is_empty());
    }
}

#[test]
fn a_first_visit_is_pinned_to_the_endpoint_that_served() {
    let (t, mut a, _b) = start("temporary");
    a.stop();
    let c = client();
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "b"));
        let cookie = format!("__cflb={}", r.cflb().expect("a first visit is pinned"));
        a.restart();
        let again = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(
            again.endpoint(),
            "b",
            "the pin names the endpoint that served"
        );
        a.stop();
    }
}

#[test]
fn failover_retries_a_request_with_a_body() {
    let (t, mut a, b) = start("temporary");
    let cookie = cookie_pinned_to(&t, "a");
    a.stop();
    let r = client()
        .post(t.url("/orders"))
        .header("cookie", &cookie)
        .body("{\"item\": 42}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "b");
    let seen = b.requests();
    assert!(seen
        .iter()
        .any(|s| s.method == "POST" && s.path == "/orders"));
}

#[test]
fn an_upstream_5xx_is_not_failed_over() {
    let (t, _a, b) = start("temporary");
    let cookie = cookie_pinned_to(&t, "a");
    let before = b.request_count();
    let r = get(
        &client(),
        &t.url("/status/503"),
        None,
        &[("cookie", &cookie)],
    );
    assert_eq!((r.status, r.endpoint()), (503, "a"));
    assert_eq!(b.request_count(), before);
}

#[test]
fn failover_leaves_the_pool_only_with_failover_across_pools() {
    for across in [false, true] {
        let (mut a, s) = (Upstream::start("a"), Upstream::start("s"));
        let body = format!(
            "{MONITOR}pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}  - id: spare\n    endpoints:\n{}\
             load_balancers:\n  - name: \"*\"\n    default_pools: [web, spare]\n    session_affinity: cookie\n\
             \x20   session_affinity_attributes: {{ zero_downtime_failover: temporary }}\n\
             \x20   adaptive_routing: {{ failover_across_pools: {across} }}\n",
            endpoints(&[&a]),
            endpoints(&[&s])
        );
        let t = Tether::start(&body);
        checked(&t, &["web/a"]);
        let cookie = cookie_pinned_to(&t, "a");
        a.stop();
        let r = get(&client(), &t.url("/"), None, &[("cookie", &cookie)]);
        let want = if across { (200, "s") } else { (502, "") };
        assert_eq!((r.status, r.endpoint()), want, "across={across}");
    }
}

/// A bounded request loop while one endpoint is killed and restarted, again and again: with
/// `temporary` every request succeeds, and the session goes home while its endpoint is up.
fn kill_restart_loop(monitor: &str, cycles: usize, phase: Duration) {
    let (t, mut a, _b) = start_with("temporary", monitor);
    let cookie = cookie_pinned_to(&t, "a");
    let c = client();
    let (mut total, mut errors, mut home) = (0, Vec::new(), 0);
    for cycle in 0..cycles {
        for down in [true, false] {
            if down {
                a.stop();
            } else {
                a.restart();
            }
            let until = Instant::now() + phase;
            while Instant::now() < until {
                let r = c
                    .get(t.url(&format!("/loop/{cycle}")))
                    .header("cookie", &cookie)
                    .send();
                total += 1;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let served = r.headers()["x-endpoint"].to_str().unwrap().to_string();
                        home += usize::from(served == "a");
                        assert!(!down || served == "b", "a is down, yet {served} answered");
                    }
                    Ok(r) => errors.push(format!("status {}", r.status())),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
    }
    let log = t.log();
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" 502 ") || l.contains("ERROR") || l.contains("no failover"))
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {total} failed: {errors:?}\n{problems:#?}",
        errors.len()
    );
    assert!(home > 0, "the session went home while a was up");
    assert!(total > 40, "only {total} requests");
}

#[test]
fn kill_restart_loop_with_temporary_sees_no_errors() {
    kill_restart_loop(MONITOR, 4, Duration::from_millis(400));
}

/// The same with a monitor fast enough to flip during the loop: requests routed just before a
/// flip still fail over rather than get a 502.
#[test]
fn kill_restart_loop_with_a_fast_monitor_sees_no_errors() {
    let fast = "monitors:\n  - { id: m, path: /health, interval: 1, timeout: 1 }\n";
    kill_restart_loop(fast, 3, Duration::from_millis(1300));
}

#[test]
fn header_session_temporary_failover_keeps_the_session() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "{MONITOR}pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: header\n\
         \x20   session_affinity_attributes: {{ headers: [x-user], zero_downtime_failover: temporary }}\n",
        endpoints(&[&a, &b])
    );
    let t = Tether::start(&body);
    checked(&t, &["web/a", "web/b"]);
    let c = client();
    let user = (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| get(&c, &t.url("/"), None, &[("x-user", u)]).endpoint() == "a")
        .unwrap();
    let mut a = a;
    a.stop();
    for _ in 0..3 {
        let r = get(&c, &t.url("/"), None, &[("x-user", &user)]);
        assert_eq!((r.status, r.endpoint()), (200, "b"));
    }
    a.restart();
    let r = get(&c, &t.url("/"), None, &[("x-user", &user)]);
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "a"),
        "the session still names a"
    );
}

//! SPEC §1 hot reload on SIGHUP, end to end: no request lost, pins kept, invalid files refused
//! with every error, new endpoints reachable, changes that need an upgrade named in the log.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::ops::*;
use crate::common::*;

fn body(ups: &[&Upstream], weights: &[f64], extra: &str) -> String {
    let eps: String = ups
        .iter()
        .zip(weights)
        .map(|(u, w)| {
            format!(
                "      - {{ name: {}, address: \"{}\", weight: {w} }}\n",
                u.name, u.addr
            )
        })
        .collect();
    format!(
        "{extra}pools:\n  - id: web\n    endpoints:\n{eps}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n"
    )
}

/// Rewrites the running config with `head()` + `body` and sends SIGHUP; waits for the log to
/// report the outcome (`reloaded` or `reload refused`) one more time than before.
fn reload(t: &Tether, body: &str, expect_ok: bool) {
    let log = t.dir.path().join("tether.log");
    let needle = if expect_ok {
        "reloaded "
    } else {
        "reload refused"
    };
    let before = count_in(&log, needle);
    std::fs::write(&t.config, format!("{}{body}", head(t.dir.path(), t.port))).unwrap();
    signal(t.pid(), "HUP");
    wait_for(needle, Duration::from_secs(10), || {
        count_in(&log, needle) > before
    });
}

#[test]
fn reload_under_load_loses_no_request_and_keeps_pins() {
    let ups = three_upstreams();
    let all = [&ups[0], &ups[1], &ups[2]];
    let t = Tether::start(&body(&all, &[1.0, 1.0, 1.0], ""));
    let pins: Vec<(String, String)> = (0..4).map(|_| pin(&t.url("/"))).collect();
    let loops: Vec<RequestLoop> = pins
        .iter()
        .map(|(cookie, ep)| {
            RequestLoop::start(
                t.url("/"),
                Some(cookie.clone()),
                Some(ep.clone()),
                false,
                5_000,
            )
        })
        .collect();
    // Changes that keep every pinned endpoint: weights, a new endpoint, trusted proxies.
    let d = Upstream::start("d");
    reload(&t, &body(&all, &[0.5, 1.0, 0.2], ""), true);
    reload(
        &t,
        &body(&[&ups[0], &ups[1], &ups[2], &d], &[1.0; 4], ""),
        true,
    );
    reload(
        &t,
        &body(&all, &[1.0; 3], "trusted_proxies: [10.0.0.0/8]\n"),
        true,
    );
    std::thread::sleep(Duration::from_millis(200));
    for (l, (_, ep)) in loops.into_iter().zip(&pins) {
        let report = l.finish();
        assert!(
            report.failures.is_empty(),
            "session on {ep}: {:?}",
            report.failures
        );
        assert!(report.ok > 0, "the loop ran");
    }
}

#[test]
fn invalid_reload_changes_nothing_and_logs_every_error() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let t = Tether::start(&body(&[&ups[0], &ups[1]], &[1.0, 0.0], ""));
    let (cookie, home) = pin(&t.url("/"));
    assert_eq!(home, "a", "b has weight 0");
    // Two errors: a bad weight, and a balancer naming a pool that does not exist.
    let bad = body(&[&ups[0], &ups[1]], &[0.0, 7.0], "")
        .replace("default_pools: [web]", "default_pools: [web, nowhere]");
    reload(&t, &bad, false);
    let log = t.log();
    assert!(log.contains("pools[0].endpoints[1].weight"), "{log}");
    assert!(log.contains("nowhere"), "{log}");
    // The old config is still in effect: new sessions still avoid b, the pin still holds.
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "a");
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!((r.status, r.endpoint()), (200, "a"));
    }
}

#[test]
fn reload_adding_an_endpoint_serves_new_sessions_within_a_second() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let t = Tether::start(&body(&[&ups[0]], &[1.0], ""));
    let (cookie, home) = pin(&t.url("/"));
    assert_eq!(home, "a");
    // b is added and a stops taking new sessions, so the first new session after the reload
    // shows that it is in effect.
    std::fs::write(
        &t.config,
        format!(
            "{}{}",
            head(t.dir.path(), t.port),
            body(&[&ups[0], &ups[1]], &[0.0, 1.0], "")
        ),
    )
    .unwrap();
    let c = client();
    let sent = Instant::now();
    signal(t.pid(), "HUP");
    wait_for("a new session on b", Duration::from_secs(10), || {
        get(&c, &t.url("/"), None, &[]).endpoint() == "b"
    });
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "reload took {took:?}");
    // The session pinned before the reload stays on a (weight 0 takes no new sessions only).
    let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!((r.status, r.endpoint()), (200, "a"));
    assert!(r.cflb().is_none(), "the old cookie is still valid");
}

#[test]
fn reload_names_listener_changes_that_need_an_upgrade() {
    let a = Upstream::start("a");
    let t = Tether::start(&body(&[&a], &[1.0], ""));
    let extra = free_port();
    let with_listener = format!(
        "{}{}",
        head(t.dir.path(), t.port).replace(
            "cookie_secret:",
            &format!("  - address: 127.0.0.1:{extra}\ncookie_secret:")
        ),
        body(&[&a], &[1.0], "")
    );
    std::fs::write(&t.config, with_listener).unwrap();
    signal(t.pid(), "HUP");
    let log = t.dir.path().join("tether.log");
    wait_for("the upgrade warning", Duration::from_secs(10), || {
        count_in(&log, "needs a graceful upgrade") > 0
    });
    assert!(
        t.log()
            .contains(&format!("listener 127.0.0.1:{extra} added")),
        "{}",
        t.log()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", extra)).is_err(),
        "a reload does not bind new listeners"
    );
    assert_eq!(get(&client(), &t.url("/"), None, &[]).status, 200);
}

#[test]
fn loop_endpoint_refused_at_reload() {
    let a = Upstream::start("a");
    let admin_port = free_port();
    let admin_section = format!("admin:\n  address: 127.0.0.1:{admin_port}\n");
    let t = Tether::start(&body(&[&a], &[1.0], &admin_section));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let own = format!("127.0.0.1:{}", t.port);
    let with_loop = body(&[&a], &[1.0], &admin_section).replace(
        "load_balancers:",
        &format!("      - {{ name: self, address: \"{own}\" }}\nload_balancers:"),
    );
    std::fs::write(
        &t.config,
        format!("{}{with_loop}", head(t.dir.path(), t.port)),
    )
    .unwrap();
    let r = admin(admin_port, "POST", "/reload", None);
    assert_eq!(r.status, 400, "{}", r.body);
    let want = format!("pools[0].endpoints[1].address: {own} is tether's own listener {own}");
    assert!(r.body.contains(&want), "{}", r.body);

    // The file moves the listener, but until an upgrade the old one is what is bound: an
    // endpoint on it still loops.
    let moved = head(t.dir.path(), free_port());
    std::fs::write(&t.config, format!("{moved}{with_loop}")).unwrap();
    let r = admin(admin_port, "POST", "/reload", None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains(&want), "{}", r.body);

    // The running config still serves, from a alone.
    let c = client();
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "a"));
    }
    let status = admin(admin_port, "GET", "/status", None).json();
    assert_eq!(status["pools"][0]["endpoints"].as_array().unwrap().len(), 1);
}

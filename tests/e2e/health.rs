//! SPEC §2 monitors and §3.3 (re-pin when the monitor calls an endpoint unhealthy), end to end.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

fn cookie_lb(monitor: &str, ups: &[&Upstream]) -> String {
    format!(
        "monitors:\n  - {monitor}\npools:\n  - id: web\n    monitor: m\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(ups)
    )
}

#[test]
fn unhealthy_endpoint_is_repinned() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let monitor = "{ id: m, path: /health, interval: 1, timeout: 1, consecutive_down: 2 }";
    let t = Tether::start(&cookie_lb(monitor, &[&ups[0], &ups[1]]));
    let c = client();
    let first = get(&c, &t.url("/"), None, &[]);
    let home = first.endpoint().to_string();
    let cookie = format!("__cflb={}", first.cflb().unwrap());
    let (sick, other) = if home == "a" {
        (&ups[0], "b")
    } else {
        (&ups[1], "a")
    };

    sick.set_health(503);
    let began = Instant::now();
    let mut moved = None;
    wait_for("the session to be re-pinned", LONG, || {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(r.status, 200);
        let done = r.endpoint() == other;
        moved = done.then_some(r);
        done
    });
    // SPEC: within interval × consecutive_down + 1 s.
    let took = began.elapsed();
    assert!(took <= Duration::from_secs(3), "re-pinned after {took:?}");
    let repin = moved.unwrap();
    let new_cookie = format!(
        "__cflb={}",
        repin.cflb().expect("a re-pin sets a new cookie")
    );
    assert!(t.log().contains(&format!(
        "web/{home} unhealthy: expected 2xx, got 503 (2 in a row)"
    )));

    // Health back: the moved session stays where it was re-pinned.
    sick.set_health(200);
    wait_for("the recovery to be logged", LONG, || {
        t.log()
            .contains(&format!("web/{home} healthy: got 200 (1 in a row)"))
    });
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[("cookie", &new_cookie)]);
        assert_eq!((r.status, r.endpoint()), (200, other));
        assert!(r.cflb().is_none());
    }
}

#[test]
fn ip_cookie_session_is_repinned_when_unhealthy() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let monitor = "{ id: m, path: /health, interval: 1, timeout: 1 }";
    let body = cookie_lb(monitor, &[&ups[0], &ups[1]])
        .replace("session_affinity: cookie", "session_affinity: ip_cookie");
    let t = Tether::start(&body);
    let c = client();
    let first = get(&c, &t.url("/"), None, &[]);
    let home = first.endpoint().to_string();
    let cookie = format!("__cflb={}", first.cflb().unwrap());
    for _ in 0..5 {
        assert_eq!(
            get(&c, &t.url("/"), None, &[]).endpoint(),
            home,
            "same IP, same endpoint"
        );
    }
    let (sick, other) = if home == "a" {
        (&ups[0], "b")
    } else {
        (&ups[1], "a")
    };
    sick.set_health(503);
    wait_for("the pin to move", LONG, || {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        r.endpoint() == other && r.cflb().is_some()
    });
    assert_eq!(
        get(&c, &t.url("/"), None, &[]).endpoint(),
        other,
        "a new session too"
    );
}

#[test]
fn header_session_is_repinned_when_unhealthy() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let monitor = "{ id: m, path: /health, interval: 1, timeout: 1 }";
    let body = cookie_lb(monitor, &[&ups[0], &ups[1]]).replace(
        "session_affinity: cookie",
        "session_affinity: header\n    session_affinity_attributes: { headers: [x-user] }",
    );
    let t = Tether::start(&body);
    let c = client();
    let user = [("x-user", "alice")];
    let home = get(&c, &t.url("/"), None, &user).endpoint().to_string();
    let (sick, other) = if home == "a" {
        (&ups[0], "b")
    } else {
        (&ups[1], "a")
    };
    sick.set_health(503);
    wait_for("the session to move", LONG, || {
        get(&c, &t.url("/"), None, &user).endpoint() == other
    });
    sick.set_health(200);
    wait_for("the recovery", LONG, || {
        t.log().contains(&format!("web/{home} healthy: got 200"))
    });
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &user);
        assert_eq!(r.endpoint(), other, "the re-pinned session stays");
        assert!(r.set_cookies().is_empty(), "header sessions set no cookie");
    }
}

#[test]
fn recovery_needs_consecutive_up_successes() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    ups[0].set_health(500);
    let monitor = "{ id: m, path: /health, interval: 1, timeout: 1, consecutive_up: 2 }";
    let t = Tether::start(&cookie_lb(monitor, &[&ups[0], &ups[1]]));
    wait_for("a to be called unhealthy", LONG, || {
        t.log()
            .contains("web/a unhealthy: expected 2xx, got 500 (1 in a row)")
    });
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "b");
    }
    ups[0].set_health(200);
    wait_for("a to be healthy again", LONG, || {
        t.log().contains("web/a healthy: got 200 (2 in a row)")
    });
    wait_for("a new session on a", LONG, || {
        get(&c, &t.url("/"), None, &[]).endpoint() == "a"
    });
}

#[test]
fn monitor_sends_method_path_headers_to_the_port_it_names() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let probe = Upstream::start("probe");
    let monitor = format!(
        "{{ id: m, method: HEAD, path: /probe, port: {}, header: {{ Host: [app.internal], X-Probe: [yes] }}, interval: 60 }}",
        probe.addr.port()
    );
    let t = Tether::start(&cookie_lb(&monitor, &[&ups[0], &ups[1]]));
    wait_for("one check per endpoint", LONG, || {
        probe.request_count() >= 2
    });
    for seen in probe.requests() {
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("HEAD", "/probe")
        );
        assert_eq!(seen.headers["host"], "app.internal");
        assert_eq!(seen.headers["x-probe"], "yes");
    }
    assert_eq!(ups[0].request_count() + ups[1].request_count(), 0);
    assert!(!t.log().contains("unhealthy"), "{}", t.log());
}

#[test]
fn expected_body_and_expected_codes_decide() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "monitors:\n  - {{ id: body, path: /health, expected_body: nope, interval: 60 }}\n  - {{ id: codes, path: /status/404, expected_codes: \"200,4xx\", interval: 60 }}\n\
         pools:\n  - id: web\n    monitor: body\n    endpoints:\n{}  - id: other\n    monitor: codes\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web, other]\n",
        endpoints(&[&a]),
        endpoints(&[&b])
    );
    let t = Tether::start(&body);
    wait_for("the body check to fail", LONG, || {
        t.log()
            .contains("web/a unhealthy: response body does not contain \"nope\"")
    });
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "b");
    }
    assert!(!t.log().contains("other/b unhealthy"), "{}", t.log());
}

#[test]
fn tcp_monitor_marks_a_closed_port_unhealthy() {
    let a = Upstream::start("a");
    let dead = free_port();
    let body = format!(
        "monitors:\n  - {{ id: m, type: tcp, interval: 60, timeout: 1 }}\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}      - {{ name: dead, address: \"127.0.0.1:{dead}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&a])
    );
    let t = Tether::start(&body);
    wait_for("the tcp check to fail", LONG, || {
        t.log().contains("web/dead unhealthy: connect:")
    });
    let c = client();
    for _ in 0..20 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "a"));
    }
}

#[test]
fn https_monitor_accepts_a_self_signed_certificate_with_verify_false() {
    let a = Upstream::start("a");
    // A TLS endpoint: another tether with a self-signed certificate in front of `a`.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let tls_port = free_port();
    let front = format!(
        "server:\n  pid_file: {d}/f.pid\n  upgrade_sock: {d}/f.sock\n  grace_period_seconds: 0\n\
         listeners:\n  - address: 127.0.0.1:{tls_port}\n    tls: {{ cert_path: {c}, key_path: {k} }}\n\
         pools:\n  - id: p\n    endpoints:\n{e}load_balancers:\n  - name: \"*\"\n    default_pools: [p]\n",
        d = dir.path().display(),
        c = cert.display(),
        k = key.display(),
        e = endpoints(&[&a])
    );
    let _front = Tether::start_with(tempfile::tempdir().unwrap(), tls_port, &front);

    let plain = Upstream::start("plain");
    let body = format!(
        "monitors:\n  - {{ id: m, type: https, path: /health, interval: 60 }}\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n      - {{ name: tls, address: \"127.0.0.1:{tls_port}\", tls: {{ verify: false }} }}\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&plain])
    );
    let t = Tether::start(&body);
    wait_for("the plain endpoint to fail the TLS check", LONG, || {
        t.log().contains("web/plain unhealthy: connect: TLS")
    });
    assert!(!t.log().contains("web/tls unhealthy"), "{}", t.log());
}

#[test]
fn a_reload_checks_new_endpoints_at_once_and_keeps_known_health() {
    let ups = three_upstreams();
    ups[0].set_health(503);
    ups[2].set_health(503);
    let monitor = "{ id: m, path: /health, interval: 3600, timeout: 2 }";
    let t = Tether::start(&cookie_lb(monitor, &[&ups[0], &ups[1]]));
    wait_for("a to be called unhealthy", LONG, || {
        t.log().contains("web/a unhealthy")
    });
    let yaml = std::fs::read_to_string(&t.config).unwrap();
    let with_c = yaml.replace(
        "load_balancers:",
        &format!("{}load_balancers:", endpoints(&[&ups[2]])),
    );
    std::fs::write(&t.config, with_c).unwrap();
    crate::common::ops::signal(t.pid(), "HUP");
    wait_for("c to be checked right after the reload", LONG, || {
        t.log().contains("web/c unhealthy")
    });
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "b");
    }
    assert!(
        !t.log().contains("web/a healthy"),
        "a stays unhealthy across the reload"
    );
}

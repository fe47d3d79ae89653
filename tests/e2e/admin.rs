//! SPEC §4, the admin listener, end to end: status JSON and page, runtime drain, reload,
//! metrics, and the bearer token.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::ops::*;
use crate::common::*;

/// Starts tether with an admin listener (plus `admin_extra` lines under `admin:`) in front of
/// `ups` with cookie affinity; returns it with the admin port.
fn start(ups: &[&Upstream], admin_extra: &str, attrs: &str) -> (Tether, u16) {
    start_env(ups, admin_extra, attrs, &[])
}

/// As [`start`], with `env` in tether's environment.
fn start_env(
    ups: &[&Upstream],
    admin_extra: &str,
    attrs: &str,
    env: &[(&str, &str)],
) -> (Tether, u16) {
    let admin_port = free_port();
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n{admin_extra}\
         pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n{attrs}",
        endpoints(ups)
    );
    let t = Tether::start_env(&body, env);
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    (t, admin_port)
}

#[test]
fn status_lists_balancers_pools_and_endpoint_state() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let (_t, port) = start(&[&ups[0], &ups[1]], "", "");
    let r = admin(port, "GET", "/status", None);
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    let s = r.json();
    assert_eq!(s["load_balancers"][0]["name"], "*");
    assert_eq!(s["load_balancers"][0]["default_pools"][0], "web");
    assert_eq!(s["pools"][0]["id"], "web");
    let a = endpoint_in(&s, "web", "a");
    assert_eq!(a["address"], ups[0].addr.to_string());
    assert_eq!(a["healthy"], true);
    assert_eq!(a["enabled"], true);
    assert_eq!(a["state"], "serving");
    assert_eq!(a["weight"], 1.0);
    assert!(a["drain_remaining_seconds"].is_null());
}

#[test]
fn drain_through_admin_api_moves_sessions_and_undrain_restores() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let (t, port) = start(&[&ups[0], &ups[1]], "", "");
    let c = client();
    let (cookie, _) = loop {
        let p = pin(&t.url("/"));
        if p.1 == "a" {
            break p;
        }
    };
    let r = admin(port, "POST", "/pools/web/endpoints/a/drain", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (j["name"].clone(), j["enabled"].clone()),
        ("a".into(), false.into())
    );
    assert_eq!(j["state"], "drained", "drain_duration 0 drains at once");
    // With drain_duration 0 the pinned session is re-pinned at once, and no new session lands on a.
    let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!((r.status, r.endpoint()), (200, "b"));
    assert!(r.cflb().is_some(), "re-pinned");
    for _ in 0..30 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "b");
    }
    let r = admin(port, "POST", "/pools/web/endpoints/a/undrain", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "serving");
    wait_for("a new session on a again", Duration::from_secs(10), || {
        get(&c, &t.url("/"), None, &[]).endpoint() == "a"
    });
    // Unknown names are 404; the wrong method is 405.
    assert_eq!(
        admin(port, "POST", "/pools/nope/endpoints/a/drain", None).status,
        404
    );
    assert_eq!(
        admin(port, "POST", "/pools/web/endpoints/zz/drain", None).status,
        404
    );
    assert_eq!(
        admin(port, "GET", "/pools/web/endpoints/a/drain", None).status,
        405
    );
}

#[test]
fn drain_with_duration_counts_down_and_keeps_pinned_sessions() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let attrs = "    session_affinity_attributes: { drain_duration: 120 }\n";
    let (t, port) = start(&[&ups[0], &ups[1]], "", attrs);
    let c = client();
    let (cookie, home) = pin(&t.url("/"));
    let other = if home == "a" { "b" } else { "a" };
    let r = admin(
        port,
        "POST",
        &format!("/pools/web/endpoints/{home}/drain"),
        None,
    );
    let j = r.json();
    assert_eq!(j["state"], "draining");
    let left = j["drain_remaining_seconds"].as_u64().unwrap();
    assert!((110..=120).contains(&left), "{left}");
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(
            (r.status, r.endpoint()),
            (200, home.as_str()),
            "pinned session kept"
        );
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), other);
    }
    let s = admin(port, "GET", "/status", None).json();
    assert_eq!(endpoint_in(&s, "web", &home)["state"], "draining");
    // A runtime drain survives a reload of an unchanged file.
    assert_eq!(admin(port, "POST", "/reload", None).status, 200);
    let s = admin(port, "GET", "/status", None).json();
    assert_eq!(endpoint_in(&s, "web", &home)["admin_drained"], true);
}

#[test]
fn reload_through_admin_api_answers_every_error_and_keeps_config() {
    let a = Upstream::start("a");
    let (t, port) = start(&[&a], "", "");
    let r = admin(port, "POST", "/reload", None);
    assert_eq!((r.status, r.json()["ok"].clone()), (200, true.into()));
    let good = std::fs::read_to_string(&t.config).unwrap();
    let bad = good
        .replace("default_pools: [web]", "default_pools: [gone]")
        .replace("session_affinity: cookie", "session_affinity: sometimes");
    std::fs::write(&t.config, bad).unwrap();
    let r = admin(port, "POST", "/reload", None);
    assert_eq!(r.status, 400, "{}", r.body);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    let text = format!("{errors:?}");
    assert!(text.contains("session_affinity"), "{text}");
    assert_eq!(get(&client(), &t.url("/"), None, &[]).endpoint(), "a");
}

#[test]
fn metrics_count_requests_outcomes_and_reloads() {
    let a = Upstream::start("a");
    let (t, port) = start(&[&a], "", "");
    let c = client();
    let (cookie, _) = pin(&t.url("/"));
    for _ in 0..5 {
        get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    }
    admin(port, "POST", "/reload", None);
    let r = admin(port, "GET", "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    let m = r.body;
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("tether_"), "unprefixed metric: {line}");
    }
    let has = |s: &str| m.lines().any(|l| l == s);
    assert!(
        has("tether_requests_total{balancer=\"*\",endpoint=\"a\",pool=\"web\",status=\"2xx\"} 6"),
        "{m}"
    );
    assert!(
        has("tether_affinity_outcomes_total{balancer=\"*\",outcome=\"new\"} 1"),
        "{m}"
    );
    assert!(
        has("tether_affinity_outcomes_total{balancer=\"*\",outcome=\"kept\"} 5"),
        "{m}"
    );
    assert!(has("tether_config_reloads_total{result=\"ok\"} 1"), "{m}");
    assert!(
        has("tether_config_reloads_total{result=\"failed\"} 0"),
        "{m}"
    );
    assert!(
        has("tether_endpoint_healthy{endpoint=\"a\",pool=\"web\"} 1"),
        "{m}"
    );
    assert!(
        has("tether_upstream_latency_seconds_count{endpoint=\"a\",pool=\"web\"} 6"),
        "{m}"
    );
}

#[test]
fn admin_token_guards_every_endpoint() {
    let a = Upstream::start("a");
    // The token comes from the environment through ${...} expansion, as in production.
    let (_t, port) = start_env(
        &[&a],
        "  token: ${TETHER_TEST_ADMIN_TOKEN}\n",
        "",
        &[("TETHER_TEST_ADMIN_TOKEN", "correct horse battery staple")],
    );
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("POST", "/reload"),
        ("POST", "/pools/web/endpoints/a/drain"),
    ] {
        assert_eq!(
            admin(port, method, path, None).status,
            401,
            "{path} without token"
        );
        assert_eq!(
            admin(port, method, path, Some("wrong")).status,
            401,
            "{path}"
        );
    }
    // The page a browser opens carries no data without the token: it only asks for it.
    let page = admin(port, "GET", "/", None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("needs its token"), "{}", page.body);
    assert!(!page.body.contains(&a.addr.to_string()), "{}", page.body);
    let ok = Some("correct horse battery staple");
    assert!(admin(port, "GET", "/", ok)
        .body
        .contains(&a.addr.to_string()));
    assert_eq!(admin(port, "GET", "/status", ok).status, 200);
    assert_eq!(
        admin(port, "POST", "/pools/web/endpoints/a/undrain", ok).status,
        200
    );
}

#[test]
fn status_page_is_self_contained_and_refreshes() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let (_t, port) = start(&[&ups[0], &ups[1]], "", "");
    admin(port, "POST", "/pools/web/endpoints/b/drain", None);
    let r = admin(port, "GET", "/", None);
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/html"),
        "{}",
        r.content_type
    );
    let html = r.body;
    assert!(html.contains("http-equiv=refresh"), "{html}");
    assert!(html.contains(&ups[0].addr.to_string()), "{html}");
    assert!(html.contains(">b<") && html.contains("drained"), "{html}");
    for external in [
        "<script src",
        "<link",
        "<img",
        "@import",
        "http://",
        "https://",
    ] {
        assert!(
            !html.contains(external),
            "external asset {external:?}: {html}"
        );
    }
}

#[test]
fn no_admin_listener_without_admin_section() {
    let a = Upstream::start("a");
    let t = Tether::start(&format!(
        "pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&a])
    ));
    assert!(!t.log().contains("admin API on"), "{}", t.log());
}

#[test]
fn metrics_count_requests_tether_answers_itself() {
    let a = Upstream::start("a");
    let admin_port = free_port();
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example.com\n    default_pools: [web]\n    always_use_https: true\n",
        endpoints(&[&a])
    ));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let c = client();
    assert_eq!(
        get(&c, &t.url("/"), Some("unknown.example"), &[]).status,
        404
    );
    assert_eq!(
        get(&c, &t.url("/"), Some("shop.example.com"), &[]).status,
        301
    );
    let m = admin(admin_port, "GET", "/metrics", None).body;
    let has = |s: &str| m.lines().any(|l| l == s);
    assert!(
        has("tether_requests_total{balancer=\"-\",endpoint=\"-\",pool=\"-\",status=\"4xx\"} 1"),
        "{m}"
    );
    assert!(
        has("tether_requests_total{balancer=\"shop.example.com\",endpoint=\"-\",pool=\"-\",status=\"3xx\"} 1"),
        "{m}"
    );
}

/// The three headers SPEC §4 puts on every admin answer; `html` asks for the status page's
/// policy (its own script and style by hash), else the strict one.
fn assert_secured(r: &AdminResp, what: &str, html: bool) {
    let h = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}: {:?}", r.headers))
            .to_string()
    };
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    let csp = h("content-security-policy");
    if html {
        for directive in [
            "default-src 'none'",
            "script-src 'sha256-",
            "style-src 'sha256-",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{what}: {directive} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{what}: {csp}");
    } else {
        assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{what}");
    }
}

#[test]
fn every_admin_answer_carries_csp_frame_denial_and_nosniff() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let (_t, port) = start(&[&ups[0], &ups[1]], "", "");
    let page = admin(port, "GET", "/", None);
    assert_eq!(page.status, 200);
    assert_secured(&page, "GET /", true);
    // Nothing on the page needs an inline style attribute, which the policy would block.
    assert!(!page.body.contains("style="), "{}", page.body);
    for (method, path, status) in [
        ("GET", "/status", 200),
        ("GET", "/metrics", 200),
        ("POST", "/pools/web/endpoints/b/drain", 200),
        ("POST", "/pools/web/endpoints/nope/drain", 404),
        ("GET", "/nope", 404),
        ("GET", "/reload", 405),
    ] {
        let r = admin(port, method, path, None);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_secured(&r, &format!("{method} {path}"), false);
    }
    // A refused cross-site request is an answer too.
    let r = client()
        .post(format!("http://127.0.0.1:{port}/reload"))
        .header("origin", "https://evil.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let refused = AdminResp {
        status: 403,
        content_type: String::new(),
        headers: r.headers().clone(),
        body: String::new(),
    };
    assert_secured(&refused, "403 cross-site", false);

    // With a token: the 401 and the locked page.
    let (_t2, port2) = start(&[&ups[0]], "  token: a-token-for-the-header-test\n", "");
    let r = admin(port2, "GET", "/status", None);
    assert_eq!(r.status, 401);
    assert_secured(&r, "401", false);
    let locked = admin(port2, "GET", "/", None);
    assert!(locked.body.contains("needs its token"), "{}", locked.body);
    assert_secured(&locked, "locked page", true);
    assert_eq!(
        locked.headers.get("content-security-policy"),
        page.headers.get("content-security-policy"),
        "one script, one style, one policy"
    );
}

#[test]
fn endpoint_names_needing_percent_encoding_drain_and_an_encoded_slash_is_404() {
    let (_t, _ups, admin_port) = start_with_b_c("");
    let r = admin(admin_port, "POST", "/pools/web/endpoints/b%20c/drain", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["name"], "b c", "{}", r.body);
    let s = admin(admin_port, "GET", "/status", None).json();
    assert_eq!(endpoint_in(&s, "web", "b c")["admin_drained"], true);
    // Any escape decodes, in any case.
    let r = admin(
        admin_port,
        "POST",
        "/p%6Fols/web/endpoints/b%20c/undrain",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let s = admin(admin_port, "GET", "/status", None).json();
    assert_eq!(endpoint_in(&s, "web", "b c")["admin_drained"], false);
    // A decoded `/` never splits or joins segments; a broken escape names nothing.
    for path in [
        "/pools/web/endpoints/b%2Fc/drain",
        "/pools/web%2Fendpoints/a/drain",
        "/pools/web/endpoints/b%2/drain",
        "/pools/web/endpoints/b%FF/drain",
    ] {
        let r = admin(admin_port, "POST", path, None);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
}

#[test]
fn admin_off_loopback_without_a_token_does_not_start_or_reload() {
    let a = Upstream::start("a");
    let body = |admin: &str| {
        format!(
            "admin:\n{admin}pools:\n  - id: web\n    endpoints:\n{}\
             load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
            endpoints(&[&a])
        )
    };
    // Start: refused before anything is bound, naming the missing key.
    let dir = tempfile::tempdir().unwrap();
    let (log, config) = (dir.path().join("tether.log"), dir.path().join("t.yaml"));
    let port = free_port();
    // TEST-NET-1: not an address of this host, so even a tether that took it would bind nothing.
    let yaml = head(dir.path(), port) + &body("  address: 192.0.2.1:9901\n");
    std::fs::write(&config, yaml).unwrap();
    let mut child = spawn_tether(&config, &log, &[]);
    let status = exit_within(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}:\n{out}");
    assert!(out.contains("admin.token: is required"), "{out}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // Reload: a file that moves the admin listener off loopback without a token is refused
    // (the move itself would wait for an upgrade; the token's removal would not).
    let admin_port = free_port();
    const TOKEN: &str = "the-token-of-the-reload-test";
    let t = Tether::start(&body(&format!(
        "  address: 127.0.0.1:{admin_port}\n  token: {TOKEN}\n"
    )));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let good = std::fs::read_to_string(&t.config).unwrap();
    let bad = good.replace(
        &format!("127.0.0.1:{admin_port}\n  token: {TOKEN}\n"),
        &format!("0.0.0.0:{admin_port}\n"),
    );
    assert_ne!(good, bad);
    std::fs::write(&t.config, bad).unwrap();
    let r = admin(admin_port, "POST", "/reload", Some(TOKEN));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("admin.token: is required"), "{}", r.body);
    // The old config, token included, is kept.
    assert_eq!(admin(admin_port, "GET", "/status", None).status, 401);
}

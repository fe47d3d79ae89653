//! SPEC §3.6 (balancers and pools) and the proxying contract of §1, end to end.

#![allow(clippy::unwrap_used)]

use crate::common::*;

fn pool(id: &str, ups: &[(&Upstream, bool)]) -> String {
    let mut s = format!("  - id: {id}\n    endpoints:\n");
    for (u, enabled) in ups {
        s += &format!(
            "      - {{ name: {}, address: \"{}\", enabled: {enabled} }}\n",
            u.name, u.addr
        );
    }
    s
}

#[test]
fn host_routing_exact_name_then_wildcard() {
    let (shop, rest) = (Upstream::start("shop"), Upstream::start("rest"));
    let body = format!(
        "pools:\n{}{}load_balancers:\n  - name: Shop.Example.com\n    default_pools: [shop]\n  - name: \"*\"\n    default_pools: [rest]\n",
        pool("shop", &[(&shop, true)]),
        pool("rest", &[(&rest, true)])
    );
    let t = Tether::start(&body);
    let c = client();
    for host in [
        "shop.example.com",
        "SHOP.EXAMPLE.COM:8080",
        "shop.example.com.",
    ] {
        assert_eq!(
            get(&c, &t.url("/"), Some(host), &[]).endpoint(),
            "shop",
            "{host}"
        );
    }
    for host in ["other.example.com", "example.com", "shop.example.com.evil"] {
        assert_eq!(
            get(&c, &t.url("/"), Some(host), &[]).endpoint(),
            "rest",
            "{host}"
        );
    }
}

#[test]
fn unknown_host_is_404_and_nothing_is_forwarded() {
    let up = Upstream::start("shop");
    let body = format!(
        "pools:\n{}load_balancers:\n  - name: shop.example.com\n    default_pools: [shop]\n",
        pool("shop", &[(&up, true)])
    );
    let t = Tether::start(&body);
    let r = get(&client(), &t.url("/"), Some("evil.example.com"), &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no load balancer"), "{}", r.body);
    assert_eq!(up.request_count(), 0);
    assert_eq!(
        get(&client(), &t.url("/"), Some("shop.example.com"), &[]).status,
        200
    );
}

#[test]
fn no_usable_endpoint_is_503_with_plain_body() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "pools:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        pool("web", &[(&a, false), (&b, false)])
    );
    let t = Tether::start(&body);
    let r = get(&client(), &t.url("/"), None, &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert!(r.body.contains("no healthy endpoint"), "{}", r.body);
    assert!(r.set_cookies().is_empty());
    assert_eq!(a.request_count() + b.request_count(), 0);
}

#[test]
fn default_pools_in_order_then_fallback_pool() {
    let (p1, p2, fb) = (
        Upstream::start("p1"),
        Upstream::start("p2"),
        Upstream::start("fb"),
    );
    let lb = "load_balancers:\n  - name: \"*\"\n    default_pools: [one, two]\n    fallback_pool: spare\n";
    let t = Tether::start(&format!(
        "pools:\n{}{}{}{lb}",
        pool("one", &[(&p1, true)]),
        pool("two", &[(&p2, true)]),
        pool("spare", &[(&fb, true)])
    ));
    for _ in 0..10 {
        assert_eq!(
            get(&client(), &t.url("/"), None, &[]).endpoint(),
            "p1",
            "steering off: first pool first"
        );
    }
    let t = Tether::start(&format!(
        "pools:\n{}{}{}{lb}",
        pool("one", &[(&p1, false)]),
        pool("two", &[(&p2, true)]),
        pool("spare", &[(&fb, true)])
    ));
    assert_eq!(
        get(&client(), &t.url("/"), None, &[]).endpoint(),
        "p2",
        "first pool ineligible: next one"
    );
    let t = Tether::start(&format!(
        "pools:\n{}{}{}{lb}",
        pool("one", &[(&p1, false)]),
        pool("two", &[(&p2, false)]),
        pool("spare", &[(&fb, true)])
    ));
    assert_eq!(
        get(&client(), &t.url("/"), None, &[]).endpoint(),
        "fb",
        "no default pool eligible: fallback"
    );
}

#[test]
fn steering_policy_random_uses_every_pool() {
    let (p1, p2) = (Upstream::start("p1"), Upstream::start("p2"));
    let t = Tether::start(&format!(
        "pools:\n{}{}load_balancers:\n  - name: \"*\"\n    default_pools: [one, two]\n    steering_policy: random\n",
        pool("one", &[(&p1, true)]),
        pool("two", &[(&p2, true)])
    ));
    let c = client();
    for _ in 0..60 {
        get(&c, &t.url("/"), None, &[]);
    }
    assert!(
        p1.request_count() > 5 && p2.request_count() > 5,
        "{} / {}",
        p1.request_count(),
        p2.request_count()
    );
}

#[test]
fn origin_steering_hash_keeps_a_client_ip_on_one_endpoint() {
    let ups = three_upstreams();
    let t = Tether::start(&format!(
        "pools:\n  - id: web\n    origin_steering: {{ policy: hash }}\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&ups[0], &ups[1], &ups[2]])
    ));
    let c = client();
    let first = get(&c, &t.url("/"), None, &[]).endpoint().to_string();
    for _ in 0..20 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), first);
    }
}

#[test]
fn forwarding_headers_and_host_override_reach_the_upstream() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "pools:\n  - id: one\n    endpoints:\n      - {{ name: a, address: \"{}\" }}\n  - id: two\n    endpoints:\n      - {{ name: b, address: \"{}\", header: {{ Host: [app.internal] }} }}\n\
         load_balancers:\n  - name: shop.example.com\n    default_pools: [one]\n  - name: blog.example.com\n    default_pools: [two]\n",
        a.addr, b.addr
    );
    let t = Tether::start(&body);
    let c = client();
    get(
        &c,
        &t.url("/x"),
        Some("shop.example.com"),
        &[("x-forwarded-for", "198.51.100.7")],
    );
    let seen = &a.requests()[0];
    assert_eq!(
        seen.headers["host"], "shop.example.com",
        "the client's Host is kept"
    );
    assert_eq!(seen.headers["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    get(&c, &t.url("/y"), Some("blog.example.com"), &[]);
    let seen = &b.requests()[0];
    assert_eq!(
        seen.headers["host"], "app.internal",
        "the endpoint's Host override applies"
    );
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let up = Upstream::start("a");
    let t = Tether::start(&format!(
        "pools:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        pool("web", &[(&up, true)])
    ));
    let c = client();
    for _ in 0..30 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).status, 200);
    }
    assert_eq!(up.request_count(), 30);
    assert!(
        up.connections() <= 2,
        "{} upstream connections for 30 requests",
        up.connections()
    );
}

#[test]
fn access_log_has_one_line_per_request() {
    let up = Upstream::start("a");
    let t = Tether::start(&format!(
        "pools:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        pool("web", &[(&up, true)])
    ));
    let c = client();
    get(&c, &t.url("/first"), Some("shop.example.com"), &[]);
    get(&c, &t.url("/second"), None, &[("cookie", "__cflb=junk")]);
    wait_for(
        "two access-log lines",
        std::time::Duration::from_secs(5),
        || t.log().lines().filter(|l| l.contains(" access]")).count() == 2,
    );
    let log = t.log();
    let first = log.lines().find(|l| l.contains("\"GET /first\"")).unwrap();
    for part in [
        "127.0.0.1 shop.example.com",
        " 200 ",
        "endpoint=web/a",
        "affinity=new",
        "upstream_ms=",
    ] {
        assert!(first.contains(part), "{part} missing in: {first}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("\"GET /second\"") && l.contains("affinity=invalid")),
        "{log}"
    );
}

//! Unit tests of the routing decision over snapshots built from YAML.

use std::net::IpAddr;

use super::route::{first_choice, is_first_choice};
use super::*;
use crate::config::Config;

const NOW: u64 = 1_700_000_000;

fn snap(yaml: &str) -> Snapshot {
    crate::balancer::fixture::snapshot(yaml, NOW)
}

const BASE: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
cookie_secret: "unit test secret that is long enough"
pools:
  - id: web
    endpoints:
      - { name: a, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002" }
      - { name: c, address: "127.0.0.1:9003", weight: 0 }
  - id: spare
    endpoints:
      - { name: s, address: "127.0.0.1:9009" }
load_balancers:
  - name: shop.example.com
    default_pools: [web]
    fallback_pool: spare
    session_affinity: cookie
  - name: "*"
    default_pools: [spare]
"#;

fn empty() -> &'static http::HeaderMap {
    static EMPTY: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
    EMPTY.get_or_init(http::HeaderMap::new)
}

fn facts<'a>(host: &'a str, cookies: &'a [&'a [u8]], random: u64) -> RequestFacts<'a> {
    RequestFacts {
        host,
        client_ip: IpAddr::from([192, 0, 2, 1]),
        cookies,
        headers: empty(),
        random,
        tls: false,
    }
}

fn name(s: &Snapshot, d: &Decision) -> String {
    s.endpoint(d.target).name.clone()
}

#[test]
fn host_picks_balancer_exact_then_wildcard() {
    let s = snap(BASE);
    assert_eq!(
        route(&s, &facts("SHOP.example.com:8080", &[], 1), NOW)
            .unwrap()
            .balancer,
        0
    );
    assert_eq!(
        route(&s, &facts("shop.example.com.", &[], 1), NOW)
            .unwrap()
            .balancer,
        0
    );
    assert_eq!(
        route(&s, &facts("other.example", &[], 1), NOW)
            .unwrap()
            .balancer,
        1
    );
    let no_wildcard = BASE.replace("- name: \"*\"", "- name: blog");
    assert_eq!(
        route(&snap(&no_wildcard), &facts("other", &[], 1), NOW),
        Err(Refusal::NoBalancer)
    );
}

#[test]
fn first_visit_mints_a_pin_that_is_then_kept() {
    let s = snap(BASE);
    let first = route(&s, &facts("shop.example.com", &[], 7), NOW).unwrap();
    assert_eq!(first.outcome, Outcome::New);
    assert_eq!(
        first.pin,
        PinAction::Set {
            expires: NOW + 82_800
        }
    );
    let lb = &s.balancers[0];
    let token = s
        .keys
        .mint(&lb.name, s.endpoint(first.target).id, NOW + 82_800);
    let cookie = format!("a=1; __cflb={token}");
    for r in 0..50 {
        let again = route(
            &s,
            &facts("shop.example.com", &[cookie.as_bytes()], r),
            NOW + 10,
        )
        .unwrap();
        assert_eq!(
            (again.target, again.pin, again.outcome),
            (first.target, PinAction::None, Outcome::Kept)
        );
    }
}

#[test]
fn bad_cookies_are_treated_as_absent() {
    let s = snap(BASE);
    let lb = &s.balancers[0];
    let a = s.pools[0].endpoints[0].id;
    let expired = format!("__cflb={}", s.keys.mint(&lb.name, a, NOW - 1));
    let gone = format!(
        "__cflb={}",
        s.keys
            .mint(&lb.name, crate::affinity::EndpointId(42), NOW + 100)
    );
    for (cookie, outcome) in [
        ("__cflb=garbage", Outcome::Invalid),
        ("__cflb=", Outcome::Invalid),
        (expired.as_str(), Outcome::Expired),
        (gone.as_str(), Outcome::Invalid),
    ] {
        let d = route(&s, &facts("shop.example.com", &[cookie.as_bytes()], 3), NOW).unwrap();
        assert_eq!(d.outcome, outcome, "{cookie}");
        assert!(matches!(d.pin, PinAction::Set { .. }));
    }
}

#[test]
fn first_valid_of_several_cookies_wins() {
    let s = snap(BASE);
    let lb = &s.balancers[0];
    let b = s.pools[0].endpoints[1].id;
    let valid = s.keys.mint(&lb.name, b, NOW + 100);
    let header = format!("__cflb=forged; __cflb={valid}");
    let d = route(&s, &facts("shop.example.com", &[header.as_bytes()], 0), NOW).unwrap();
    assert_eq!((name(&s, &d).as_str(), d.outcome), ("b", Outcome::Kept));
}

#[test]
fn only_the_first_three_cookies_are_verified() {
    let s = snap(BASE);
    let lb = &s.balancers[0];
    let b = s.pools[0].endpoints[1].id;
    let valid = s.keys.mint(&lb.name, b, NOW + 100);
    let third = format!("__cflb=f1; __cflb=f2; __cflb={valid}");
    let d = route(&s, &facts("shop.example.com", &[third.as_bytes()], 0), NOW).unwrap();
    assert_eq!((name(&s, &d).as_str(), d.outcome), ("b", Outcome::Kept));
    // Split across headers as a client may: the count runs over the whole request.
    let (head, tail) = ("__cflb=f1; __cflb=f2", format!("__cflb=f3; __cflb={valid}"));
    let d = route(
        &s,
        &facts("shop.example.com", &[head.as_bytes(), tail.as_bytes()], 0),
        NOW,
    )
    .unwrap();
    assert_eq!(
        d.outcome,
        Outcome::Invalid,
        "a fourth value is not honoured"
    );
    assert!(matches!(d.pin, PinAction::Set { .. }));
}

#[test]
fn weight_zero_gets_no_new_sessions_and_weights_spread() {
    let s = snap(BASE);
    let mut counts = std::collections::HashMap::new();
    for r in 0..2000u64 {
        let d = route(
            &s,
            &facts(
                "shop.example.com",
                &[],
                r.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            NOW,
        )
        .unwrap();
        *counts.entry(name(&s, &d)).or_insert(0) += 1;
    }
    assert_eq!(counts.get("c"), None);
    let (a, b) = (counts["a"], counts["b"]);
    assert!(a > 800 && b > 800, "{counts:?}");
}

#[test]
fn random_steering_skips_an_unhealthy_endpoint_and_keeps_weights() {
    let s = snap(
        r#"
listeners: [{ address: "127.0.0.1:8080" }]
pools:
  - id: web
    endpoints:
      - { name: a, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002", weight: 0.5 }
      - { name: c, address: "127.0.0.1:9003" }
load_balancers:
  - { name: "*", default_pools: [web], session_affinity: cookie }
"#,
    );
    s.pools[0].endpoints[0].state.set_healthy(false);
    let mut counts = std::collections::HashMap::new();
    for r in 0..30_000u64 {
        let random = r.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (r << 17);
        let d = route(&s, &facts("x", &[], random), NOW).unwrap();
        *counts.entry(name(&s, &d)).or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), None, "{counts:?}");
    // c (weight 1) twice as often as b (weight 0.5) among the usable ones.
    let ratio = f64::from(counts["c"]) / f64::from(counts["b"]);
    assert!((1.8..2.2).contains(&ratio), "{counts:?}");
}

#[test]
fn unhealthy_or_drained_pin_is_repinned_and_draining_pin_kept() {
    let yaml = BASE.replace(
        "session_affinity: cookie",
        "session_affinity: cookie\n    session_affinity_attributes: { drain_duration: 60 }",
    );
    let s = snap(&yaml);
    let lb = &s.balancers[0];
    let a = &s.pools[0].endpoints[0];
    let cookie = format!("__cflb={}", s.keys.mint(&lb.name, a.id, NOW + 1000));
    a.state.set_healthy(false);
    let d = route(&s, &facts("shop.example.com", &[cookie.as_bytes()], 0), NOW).unwrap();
    assert_eq!(
        (name(&s, &d).as_str(), d.outcome),
        ("b", Outcome::Unhealthy)
    );
    a.state.set_healthy(true);
    a.state.drain(NOW);
    let d = route(
        &s,
        &facts("shop.example.com", &[cookie.as_bytes()], 0),
        NOW + 30,
    )
    .unwrap();
    assert_eq!((name(&s, &d).as_str(), d.outcome), ("a", Outcome::Kept));
    let d = route(&s, &facts("shop.example.com", &[], 0), NOW + 30).unwrap();
    assert_eq!(
        name(&s, &d),
        "b",
        "a draining endpoint takes no new session"
    );
    let d = route(
        &s,
        &facts("shop.example.com", &[cookie.as_bytes()], 0),
        NOW + 60,
    )
    .unwrap();
    assert_eq!((name(&s, &d).as_str(), d.outcome), ("b", Outcome::Drained));
}

#[test]
fn fallback_pool_then_503() {
    let s = snap(BASE);
    for e in &s.pools[0].endpoints {
        e.state.set_healthy(false);
    }
    let d = route(&s, &facts("shop.example.com", &[], 0), NOW).unwrap();
    assert_eq!(name(&s, &d), "s");
    s.pools[1].endpoints[0].state.set_healthy(false);
    assert_eq!(
        route(&s, &facts("shop.example.com", &[], 0), NOW),
        Err(Refusal::NoEndpoint { balancer: 0 })
    );
}

#[test]
fn minimum_origins_makes_a_pool_ineligible() {
    let yaml = BASE.replace("  - id: web\n", "  - id: web\n    minimum_origins: 3\n");
    let s = snap(&yaml);
    s.pools[0].endpoints[1].state.set_healthy(false);
    let d = route(&s, &facts("shop.example.com", &[], 0), NOW).unwrap();
    assert_eq!(
        name(&s, &d),
        "s",
        "web has 2 healthy of minimum 3: fallback"
    );
}

#[test]
fn always_use_https_is_decided_with_the_balancer() {
    let s = snap(&BASE.replace(
        "session_affinity: cookie",
        "session_affinity: cookie\n    always_use_https: true",
    ));
    assert_eq!(
        route(&s, &facts("shop.example.com", &[], 0), NOW),
        Err(Refusal::HttpsOnly { balancer: 0 })
    );
    let tls = RequestFacts {
        tls: true,
        ..facts("shop.example.com", &[], 0)
    };
    assert!(route(&s, &tls, NOW).is_ok(), "over TLS it is served");
    // A host that cannot be put in a Location is served as it is.
    let s = snap(&BASE.replace(
        "default_pools: [spare]",
        "default_pools: [spare]\n    always_use_https: true",
    ));
    assert_eq!(
        route(&s, &facts("other.example.com", &[], 0), NOW),
        Err(Refusal::HttpsOnly { balancer: 1 })
    );
    assert!(route(&s, &facts("", &[], 0), NOW).is_ok());
}

#[test]
fn affinity_none_sets_no_pin() {
    let s = snap(&BASE.replace("session_affinity: cookie", "session_affinity: none"));
    let d = route(&s, &facts("shop.example.com", &[], 0), NOW).unwrap();
    assert_eq!((d.pin, d.outcome), (PinAction::None, Outcome::NoAffinity));
}

#[test]
fn ip_cookie_pins_first_pick_by_client_ip() {
    let s = snap(&BASE.replace("session_affinity: cookie", "session_affinity: ip_cookie"));
    let first = route(&s, &facts("shop.example.com", &[], 1), NOW).unwrap();
    for r in 0..20 {
        assert_eq!(
            route(&s, &facts("shop.example.com", &[], r), NOW)
                .unwrap()
                .target,
            first.target
        );
    }
    assert!(matches!(first.pin, PinAction::Set { .. }));
}

fn header_snap(require_all: bool) -> Snapshot {
    snap(&BASE.replace(
        "session_affinity: cookie",
        &format!(
            "session_affinity: header\n    session_affinity_attributes: {{ headers: [x-user, \"cookie:sid\"], require_all_headers: {require_all} }}"
        ),
    ))
}

/// Routes like the proxy does, carrying out a `Remember` as the response would.
fn route_header(s: &Snapshot, headers: &http::HeaderMap, cookies: &[&[u8]], now: u64) -> Decision {
    let f = RequestFacts {
        headers,
        ..facts("shop.example.com", cookies, fastrand::u64(..))
    };
    let d = route(s, &f, now).unwrap();
    if let PinAction::Remember { session } = d.pin {
        s.balancers[d.balancer]
            .sessions
            .as_ref()
            .unwrap()
            .pin(session, s.endpoint(d.target).id);
    }
    d
}

fn user(name: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-user", name.parse().unwrap());
    h
}

#[test]
fn header_session_pins_and_sets_no_cookie() {
    let s = header_snap(false);
    let first = route_header(&s, &user("alice"), &[], NOW);
    assert_eq!(first.outcome, Outcome::New);
    assert!(matches!(first.pin, PinAction::Remember { .. }));
    for _ in 0..20 {
        let d = route_header(&s, &user("alice"), &[], NOW);
        assert_eq!(
            (d.target, d.outcome, d.pin),
            (first.target, Outcome::Kept, PinAction::None)
        );
    }
}

#[test]
fn header_session_without_headers_is_balanced_without_session() {
    let s = header_snap(false);
    let d = route_header(&s, &http::HeaderMap::new(), &[b"theme=dark"], NOW);
    assert_eq!((d.outcome, d.pin), (Outcome::NoSession, PinAction::None));
    let d = route_header(&s, &http::HeaderMap::new(), &[b"sid=7"], NOW);
    assert_eq!(
        d.outcome,
        Outcome::New,
        "one of the entries is enough by default"
    );
    let strict = header_snap(true);
    let d = route_header(&strict, &user("alice"), &[], NOW);
    assert_eq!(
        d.outcome,
        Outcome::NoSession,
        "require_all_headers: sid is missing"
    );
    let d = route_header(&strict, &user("alice"), &[b"sid=7"], NOW);
    assert_eq!(d.outcome, Outcome::New);
}

#[test]
fn header_repin_after_unhealthy_sticks_when_the_endpoint_recovers() {
    let s = header_snap(false);
    let first = route_header(&s, &user("bob"), &[], NOW);
    let home = s.endpoint(first.target);
    home.state.set_healthy(false);
    let moved = route_header(&s, &user("bob"), &[], NOW);
    assert_eq!(moved.outcome, Outcome::Unhealthy);
    assert_ne!(moved.target, first.target);
    home.state.set_healthy(true);
    let after = route_header(&s, &user("bob"), &[], NOW);
    assert_eq!(
        (after.target, after.outcome),
        (moved.target, Outcome::Kept),
        "the re-pin holds"
    );
}

#[test]
fn header_sessions_survive_a_rebuild_for_endpoints_that_still_exist() {
    let yaml = BASE.replace(
        "session_affinity: cookie",
        "session_affinity: header\n    session_affinity_attributes: { headers: [x-user] }",
    );
    let runtime = RuntimeState::default();
    let build = |y: &str| Snapshot::build(Config::from_yaml(y, "t").unwrap(), &runtime, NOW);
    let s1 = build(&yaml);
    let mut homes = std::collections::HashMap::new();
    for i in 0..40 {
        let d = route_header(&s1, &user(&format!("u{i}")), &[], NOW);
        homes.insert(i, s1.endpoint(d.target).name.clone());
    }
    let s2 = build(&yaml.replace(
        "      - { name: c, address: \"127.0.0.1:9003\", weight: 0 }\n",
        "",
    ));
    for (i, home) in homes {
        let d = route_header(&s2, &user(&format!("u{i}")), &[], NOW);
        assert_eq!(
            (s2.endpoint(d.target).name.clone(), d.outcome),
            (home, Outcome::Kept)
        );
    }
}

#[test]
fn outcome_table_matches_declaration_order() {
    for (i, o) in Outcome::ALL.iter().enumerate() {
        assert_eq!(*o as usize, i, "{}", o.as_str());
    }
}

#[test]
fn first_choice_is_where_a_new_session_goes_when_all_serve_and_ignores_health() {
    let s = header_snap(false);
    let lb = &s.balancers[0];
    let mut homes = [0usize; 2];
    for i in 0..200 {
        let d = route_header(&s, &user(&format!("u{i}")), &[], NOW);
        let key = d.key.unwrap();
        assert_eq!(first_choice(&s, lb, key, d.target.pool), Some(d.target));
        assert!(is_first_choice(&s, lb, key, d.target));
        homes[d.target.endpoint] += 1;
    }
    assert!(
        homes[0] > 0 && homes[1] > 0,
        "both endpoints are someone's home"
    );
    // Health and drains do not move the first choice; where the session went does.
    let d = route_header(&s, &user("carol"), &[], NOW);
    let home = d.target;
    let key = d.key.unwrap();
    s.endpoint(home).state.set_healthy(false);
    s.endpoint(home).state.drain(NOW);
    let moved = route_header(&s, &user("carol"), &[], NOW);
    assert_ne!(moved.target, home);
    assert_eq!(first_choice(&s, lb, key, moved.target.pool), Some(home));
    assert!(!is_first_choice(&s, lb, key, moved.target));
    // A session in the fallback pool is away from home while the default pool could serve.
    let spare = EndpointRef {
        pool: 1,
        endpoint: 0,
    };
    assert!(!is_first_choice(&s, lb, key, spare));
}

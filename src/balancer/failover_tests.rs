//! Unit tests of the failover decision over snapshots built from YAML.

use std::net::IpAddr;

use super::*;
use crate::affinity::rendezvous::HashKey;
use crate::balancer::{route, PinAction, RequestFacts, RuntimeState};
use crate::config::Config;

const NOW: u64 = 1_700_000_000;

const BASE: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
cookie_secret: "unit test secret that is long enough"
pools:
  - id: web
    endpoints:
      - { name: a, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002" }
      - { name: z, address: "127.0.0.1:9003", weight: 0 }
  - id: more
    endpoints:
      - { name: m, address: "127.0.0.1:9004" }
  - id: spare
    endpoints:
      - { name: s, address: "127.0.0.1:9009" }
load_balancers:
  - name: shop.example.com
    default_pools: [web, more]
    fallback_pool: spare
    session_affinity: cookie
    session_affinity_attributes: { zero_downtime_failover: MODE }
    adaptive_routing: { failover_across_pools: ACROSS }
"#;

fn snap(mode: &str, across: bool) -> Snapshot {
    let yaml = BASE
        .replace("MODE", mode)
        .replace("ACROSS", &across.to_string());
    crate::balancer::fixture::snapshot(&yaml, NOW)
}

fn pick(random: u64) -> PickFacts {
    PickFacts {
        client: HashKey::of_ip(IpAddr::from([192, 0, 2, 1])),
        random,
    }
}

/// The decision for a request carrying a valid cookie to `name` in pool `web`.
fn kept(s: &Snapshot, name: &str) -> Decision {
    let lb = &s.balancers[0];
    let e = s.pools[0]
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .unwrap();
    let cookie = format!("__cflb={}", s.keys.mint(&lb.name, e.id, NOW + 1000));
    let headers = http::HeaderMap::new();
    let facts = RequestFacts {
        host: "shop.example.com",
        client_ip: IpAddr::from([192, 0, 2, 1]),
        cookies: &[cookie.as_bytes()],
        headers: &headers,
        random: 0,
        tls: false,
    };
    let d = route(s, &facts, NOW).unwrap();
    assert_eq!(d.outcome, Outcome::Kept);
    d
}

fn name(s: &Snapshot, d: &Decision) -> String {
    s.endpoint(d.target).name.clone()
}

#[test]
fn none_never_retries() {
    let s = snap("none", true);
    let d = kept(&s, "a");
    assert_eq!(
        failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect),
        None
    );
}

#[test]
fn temporary_serves_elsewhere_in_the_pool_and_keeps_the_cookie() {
    let s = snap("temporary", false);
    let d = kept(&s, "a");
    for r in 0..50 {
        let f = failover(&s, &d, &[d.target], pick(r), NOW, Cause::Connect).unwrap();
        assert_eq!(
            (name(&s, &f).as_str(), f.pin, f.outcome),
            ("b", PinAction::None, Outcome::FailoverTemporary),
            "weight 0 and the failed endpoint are never chosen"
        );
    }
}

#[test]
fn sticky_repins_to_the_endpoint_that_serves() {
    let s = snap("sticky", false);
    let d = kept(&s, "b");
    let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect).unwrap();
    assert_eq!(
        (name(&s, &f).as_str(), f.pin, f.outcome),
        (
            "a",
            PinAction::Set {
                expires: NOW + 82_800
            },
            Outcome::FailoverSticky
        )
    );
}

#[test]
fn a_new_session_is_pinned_where_it_was_served_in_both_modes() {
    for mode in ["temporary", "sticky"] {
        let s = snap(mode, false);
        let mut d = kept(&s, "a");
        d.pin = PinAction::Set { expires: NOW + 5 };
        d.outcome = Outcome::New;
        let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect).unwrap();
        assert_eq!(name(&s, &f), "b");
        assert_eq!(f.pin, PinAction::Set { expires: NOW + 5 }, "{mode}");
    }
}

#[test]
fn only_one_retry_per_request() {
    let s = snap("temporary", true);
    let d = kept(&s, "a");
    let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect).unwrap();
    assert_eq!(
        failover(&s, &f, &[d.target, f.target], pick(0), NOW, Cause::Connect),
        None
    );
    // A stale pooled connection retried on the same endpoint still allows the one failover.
    assert!(failover(&s, &d, &[d.target, d.target], pick(0), NOW, Cause::Connect).is_some());
}

#[test]
fn a_monitor_flip_during_the_connect_still_fails_over() {
    let s = snap("temporary", false);
    let d = kept(&s, "a");
    s.endpoint(d.target).state.set_healthy(false);
    let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect).unwrap();
    assert_eq!(name(&s, &f), "b");
}

#[test]
fn an_exhausted_pool_fails_over_across_pools_only_when_allowed() {
    for (across, want) in [(false, None), (true, Some("m"))] {
        let s = snap("temporary", across);
        let d = kept(&s, "a");
        s.pools[0].endpoints[1].state.set_healthy(false);
        let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect);
        assert_eq!(f.map(|f| name(&s, &f)).as_deref(), want);
    }
}

#[test]
fn across_pools_skips_ineligible_pools_and_ends_at_the_fallback() {
    let s = snap("sticky", true);
    let d = kept(&s, "a");
    s.pools[0].endpoints[1].state.set_healthy(false);
    s.pools[1].endpoints[0].state.set_healthy(false);
    let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect).unwrap();
    assert_eq!(
        (name(&s, &f).as_str(), f.outcome),
        ("s", Outcome::FailoverSticky)
    );
    s.pools[2].endpoints[0].state.set_healthy(false);
    assert_eq!(
        failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect),
        None
    );
}

#[test]
fn drained_endpoints_take_no_failover() {
    let s = snap("temporary", false);
    let d = kept(&s, "a");
    s.pools[0].endpoints[1].state.drain(NOW);
    assert_eq!(
        failover(&s, &d, &[d.target], pick(0), NOW, Cause::Connect),
        None
    );
}

#[test]
fn header_sessions_fail_over_without_a_repin_unless_new() {
    let yaml = BASE
        .replace(
            "session_affinity: cookie\n    session_affinity_attributes: { zero_downtime_failover: MODE }",
            "session_affinity: header\n    session_affinity_attributes: { zero_downtime_failover: temporary, headers: [x-user] }",
        )
        .replace("ACROSS", "false");
    let config = Config::from_yaml(&yaml, "test").unwrap_or_else(|e| panic!("{e}"));
    let s = Snapshot::build(config, &RuntimeState::default(), NOW);
    let a = EndpointRef {
        pool: 0,
        endpoint: 0,
    };
    let kept = Decision {
        balancer: 0,
        target: a,
        pin: PinAction::None,
        outcome: Outcome::Kept,
        key: None,
    };
    let f = failover(&s, &kept, &[a], pick(0), NOW, Cause::Connect).unwrap();
    assert_eq!(
        (name(&s, &f).as_str(), f.pin, f.outcome),
        ("b", PinAction::None, Outcome::FailoverTemporary)
    );
    let new = Decision {
        pin: PinAction::Remember { session: 7 },
        outcome: Outcome::New,
        ..kept
    };
    let f = failover(&s, &new, &[a], pick(0), NOW, Cause::Connect).unwrap();
    assert_eq!(
        (name(&s, &f).as_str(), f.pin),
        ("b", PinAction::Remember { session: 7 })
    );
}

#[test]
fn a_new_header_session_fails_over_by_its_hash_key() {
    let yaml = r#"
listeners: [{ address: "127.0.0.1:8080" }]
pools:
  - id: web
    endpoints:
      - { name: a, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002" }
      - { name: c, address: "127.0.0.1:9003" }
      - { name: d, address: "127.0.0.1:9004" }
      - { name: e, address: "127.0.0.1:9005" }
load_balancers:
  - name: "*"
    default_pools: [web]
    session_affinity: header
    session_affinity_attributes: { zero_downtime_failover: temporary, headers: [x-user] }
"#;
    let config = Config::from_yaml(yaml, "test").unwrap_or_else(|e| panic!("{e}"));
    let s = Snapshot::build(config, &RuntimeState::default(), NOW);
    for user in ["alice", "bob", "carol", "dave"] {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-user", user.parse().unwrap());
        let facts = |random| RequestFacts {
            host: "shop.example.com",
            client_ip: IpAddr::from([192, 0, 2, 1]),
            cookies: &[],
            headers: &headers,
            random,
            tls: false,
        };
        let first = route(&s, &facts(0), NOW).unwrap();
        assert_eq!(first.outcome, Outcome::New);
        // Where the session goes when its first endpoint cannot take it: by its key.
        let home = s.endpoint(first.target);
        home.state.set_healthy(false);
        let by_key = route(&s, &facts(0), NOW).unwrap().target;
        home.state.set_healthy(true);
        for random in [0, 1 << 62, u64::MAX / 3, u64::MAX] {
            let f = failover(
                &s,
                &first,
                &[first.target],
                pick(random),
                NOW,
                Cause::Connect,
            )
            .unwrap();
            assert_eq!(
                (name(&s, &f), f.pin),
                (s.endpoint(by_key).name.clone(), first.pin),
                "user {user}, random {random}"
            );
        }
    }
}

#[test]
fn a_status_retry_happens_whatever_the_failover_mode_and_only_sticky_repins() {
    for (mode, outcome, repinned) in [
        ("none", Outcome::FailoverTemporary, false),
        ("temporary", Outcome::FailoverTemporary, false),
        ("sticky", Outcome::FailoverSticky, true),
    ] {
        let s = snap(mode, false);
        let d = kept(&s, "a");
        let f = failover(&s, &d, &[d.target], pick(0), NOW, Cause::Status(503))
            .unwrap_or_else(|| panic!("{mode}: no retry on 503"));
        assert_eq!(name(&s, &f), "b", "{mode}");
        assert_eq!(f.outcome, outcome, "{mode}");
        assert_eq!(matches!(f.pin, PinAction::Set { .. }), repinned, "{mode}");
        // Still one retry per request.
        assert_eq!(
            failover(
                &s,
                &f,
                &[d.target, f.target],
                pick(0),
                NOW,
                Cause::Status(503)
            ),
            None
        );
    }
}

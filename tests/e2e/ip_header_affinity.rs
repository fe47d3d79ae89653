//! SPEC §3.2 `ip_cookie` and `header` affinity, and the client IP behind `trusted_proxies`.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::common::*;

fn lb(ups: &[(&Upstream, f64)], affinity: &str, extra: &str) -> String {
    let mut eps = String::new();
    for (u, w) in ups {
        eps += &format!(
            "      - {{ name: {}, address: \"{}\", weight: {w} }}\n",
            u.name, u.addr
        );
    }
    format!("pools:\n  - id: web\n    endpoints:\n{eps}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: {affinity}\n{extra}")
}

fn local(i: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, i])
}

#[test]
fn ip_cookie_same_ip_lands_on_same_endpoint_without_cookie() {
    let ups = three_upstreams();
    let t = Tether::start(&lb(
        &[(&ups[0], 1.0), (&ups[1], 1.0), (&ups[2], 1.0)],
        "ip_cookie",
        "",
    ));
    for i in [1u8, 7, 42] {
        let c = client_from(local(i));
        let first = get(&c, &t.url("/"), None, &[]);
        assert!(first.cflb().is_some(), "ip_cookie still sets __cflb");
        for _ in 0..10 {
            let r = get(&c, &t.url("/"), None, &[]);
            assert_eq!(r.endpoint(), first.endpoint(), "client {i}");
        }
    }
    // Another instance with the same config agrees, without any cookie.
    let t2 = Tether::start(&lb(
        &[(&ups[0], 1.0), (&ups[1], 1.0), (&ups[2], 1.0)],
        "ip_cookie",
        "",
    ));
    for i in [1u8, 7, 42] {
        let c = client_from(local(i));
        assert_eq!(
            get(&c, &t.url("/"), None, &[]).endpoint(),
            get(&c, &t2.url("/"), None, &[]).endpoint()
        );
    }
}

#[test]
fn ip_cookie_spreads_many_source_ips_by_weight() {
    let ups = [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("z"),
    ];
    let t = Tether::start(&lb(
        &[(&ups[0], 1.0), (&ups[1], 0.5), (&ups[2], 0.0)],
        "ip_cookie",
        "",
    ));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 1..=240u8 {
        let r = get(&client_from(local(i)), &t.url("/"), None, &[]);
        *counts.entry(r.endpoint().to_string()).or_default() += 1;
    }
    assert_eq!(counts.get("z"), None, "weight 0 gets no client: {counts:?}");
    // Expected 160 : 80.
    let (a, b) = (counts["a"], counts["b"]);
    assert!(
        (125..=195).contains(&a) && (45..=115).contains(&b),
        "{counts:?}"
    );
}

#[test]
fn ip_cookie_valid_cookie_wins_over_the_ip() {
    let ups = three_upstreams();
    let t = Tether::start(&lb(
        &[(&ups[0], 1.0), (&ups[1], 1.0), (&ups[2], 1.0)],
        "ip_cookie",
        "",
    ));
    let home = get(&client_from(local(9)), &t.url("/"), None, &[]);
    // A client from elsewhere carrying that cookie goes where the cookie says.
    let cookie = format!("__cflb={}", home.cflb().unwrap());
    for i in 10..20u8 {
        let r = get(
            &client_from(local(i)),
            &t.url("/"),
            None,
            &[("cookie", &cookie)],
        );
        assert_eq!(r.endpoint(), home.endpoint());
    }
}

#[test]
fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let ups = three_upstreams();
    let body = lb(
        &[(&ups[0], 1.0), (&ups[1], 1.0), (&ups[2], 1.0)],
        "ip_cookie",
        "trusted_proxies: [\"127.0.0.1/32\", \"::1\"]\n",
    );
    let t = Tether::start(&body);
    let xffs: Vec<String> = (1..=30).map(|i| format!("203.0.113.{i}")).collect();
    let via_proxy = client_from(local(1));
    let mut seen = HashSet::new();
    for xff in &xffs {
        let first = get(&via_proxy, &t.url("/"), None, &[("x-forwarded-for", xff)]);
        let again = get(
            &via_proxy,
            &t.url("/"),
            None,
            &[("x-forwarded-for", &format!("{xff}, 127.0.0.1"))],
        );
        assert_eq!(
            first.endpoint(),
            again.endpoint(),
            "the right-most untrusted hop is the client"
        );
        seen.insert(first.endpoint().to_string());
    }
    assert!(
        seen.len() >= 2,
        "from a trusted proxy the forwarded address decides: {seen:?}"
    );

    let untrusted = client_from(local(2));
    let home = get(&untrusted, &t.url("/"), None, &[])
        .endpoint()
        .to_string();
    for xff in &xffs {
        let r = get(&untrusted, &t.url("/"), None, &[("x-forwarded-for", xff)]);
        assert_eq!(
            r.endpoint(),
            home,
            "an untrusted peer cannot choose its endpoint by X-Forwarded-For"
        );
    }
}

fn header_lb(ups: &[&Upstream; 3], attrs: &str) -> String {
    let list: Vec<(&Upstream, f64)> = ups.iter().map(|u| (*u, 1.0)).collect();
    lb(
        &list,
        "header",
        &format!("    session_affinity_attributes: {{ {attrs} }}\n"),
    )
}

#[test]
fn header_session_pins_by_header_value_and_sets_no_cookie() {
    let ups = three_upstreams();
    let t = Tether::start(&header_lb(
        &[&ups[0], &ups[1], &ups[2]],
        "headers: [X-User]",
    ));
    let c = client();
    for user in ["alice", "bob", "carol"] {
        let first = get(&c, &t.url("/"), None, &[("x-user", user)]);
        for _ in 0..10 {
            let r = get(&c, &t.url("/"), None, &[("X-USER", user)]);
            assert_eq!(r.endpoint(), first.endpoint(), "{user}");
            assert!(r.set_cookies().is_empty(), "no cookie in header mode");
        }
    }
}

#[test]
fn header_sessions_spread_over_endpoints() {
    let ups = three_upstreams();
    let t = Tether::start(&header_lb(
        &[&ups[0], &ups[1], &ups[2]],
        "headers: [x-user]",
    ));
    let c = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..150 {
        let r = get(&c, &t.url("/"), None, &[("x-user", &format!("user-{i}"))]);
        *counts.entry(r.endpoint().to_string()).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n >= 20) && counts.len() == 3,
        "{counts:?}"
    );
}

#[test]
fn header_session_by_cookie_value() {
    let ups = three_upstreams();
    let t = Tether::start(&header_lb(
        &[&ups[0], &ups[1], &ups[2]],
        "headers: [\"cookie:sid\"]",
    ));
    let c = client();
    for sid in ["s1", "s2", "s3", "s4"] {
        let first = get(&c, &t.url("/"), None, &[("cookie", &format!("sid={sid}"))]);
        for theme in ["dark", "light", "blue"] {
            let r = get(
                &c,
                &t.url("/"),
                None,
                &[("cookie", &format!("theme={theme}; sid={sid}"))],
            );
            assert_eq!(r.endpoint(), first.endpoint(), "only sid's value counts");
        }
    }
    // The upstream still receives the cookies untouched.
    let seen = ups.iter().flat_map(|u| u.requests()).last().unwrap();
    assert!(seen.headers["cookie"].to_str().unwrap().contains("sid="));
}

/// Distinct endpoints that 30 requests with `headers` reach: 1 means a session holds them.
fn endpoints_reached(t: &Tether, headers: &[(&str, &str)]) -> usize {
    let c = client();
    (0..30)
        .map(|_| get(&c, &t.url("/"), None, headers).endpoint().to_string())
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn require_all_headers_false_needs_one_true_needs_all() {
    let ups = three_upstreams();
    let any = Tether::start(&header_lb(
        &[&ups[0], &ups[1], &ups[2]],
        "headers: [x-a, x-b]",
    ));
    let all = Tether::start(&header_lb(
        &[&ups[0], &ups[1], &ups[2]],
        "headers: [x-a, x-b], require_all_headers: true",
    ));
    let one = [("x-a", "1")];
    let both = [("x-a", "1"), ("x-b", "2")];
    assert_eq!(
        endpoints_reached(&any, &one),
        1,
        "false: one header makes a session"
    );
    assert_eq!(endpoints_reached(&any, &both), 1);
    assert!(
        endpoints_reached(&any, &[]) > 1,
        "no header: balanced per request"
    );
    assert!(
        endpoints_reached(&all, &one) > 1,
        "true: one of two is no session"
    );
    assert_eq!(
        endpoints_reached(&all, &both),
        1,
        "true: all present makes a session"
    );
    assert!(endpoints_reached(&all, &[]) > 1);
}

#[test]
fn new_header_values_start_a_new_session() {
    let ups = three_upstreams();
    let t = Tether::start(&header_lb(
        &[&ups[0], &ups[1], &ups[2]],
        "headers: [x-user]",
    ));
    let c = client();
    get(&c, &t.url("/one"), None, &[("x-user", "alice")]);
    get(&c, &t.url("/two"), None, &[("x-user", "alice")]);
    get(&c, &t.url("/three"), None, &[("x-user", "alice2")]);
    get(&c, &t.url("/four"), None, &[]);
    wait_for(
        "four access lines",
        std::time::Duration::from_secs(5),
        || t.log().matches(" access]").count() == 4,
    );
    let log = t.log();
    let outcome = |path: &str| {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("\"GET {path}\"")))
            .unwrap();
        line.split("affinity=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(outcome("/one"), "new");
    assert_eq!(outcome("/two"), "kept");
    assert_eq!(outcome("/three"), "new", "another value is another session");
    assert_eq!(outcome("/four"), "no-session");
}

#[test]
fn ip_cookie_and_forwarded_clients_work_over_ipv6() {
    let ups = three_upstreams();
    let dir = tempfile::tempdir().unwrap();
    let (port, port6) = (free_port(), free_port());
    let list: Vec<(&Upstream, f64)> = ups.iter().map(|u| (u, 1.0)).collect();
    let first = format!("  - address: 127.0.0.1:{port}\n");
    let head =
        head(dir.path(), port).replace(&first, &format!("{first}  - address: \"[::1]:{port6}\"\n"));
    let yaml = format!(
        "{head}trusted_proxies: [\"::1\"]\n{}",
        lb(&list, "ip_cookie", "")
    );
    let t = Tether::start_with(dir, port, &yaml);
    let c = client_from("::1".parse().unwrap());
    let url = format!("http://[::1]:{port6}/");
    let home = get(&c, &url, None, &[]).endpoint().to_string();
    assert!(!home.is_empty());
    let mut seen = HashSet::new();
    for i in 1..=20 {
        let xff = format!("2001:db8::{i:x}");
        let a = get(&c, &url, None, &[("x-forwarded-for", &xff)]);
        let b = get(&c, &url, None, &[("x-forwarded-for", &xff)]);
        assert_eq!(a.endpoint(), b.endpoint());
        seen.insert(a.endpoint().to_string());
    }
    assert!(
        seen.len() >= 2,
        "IPv6 clients forwarded by a trusted ::1 spread: {seen:?}"
    );
    // Access lines are written out in batches (every 100 ms): poll for them.
    wait_for(
        "the access log names the forwarded IPv6 client",
        std::time::Duration::from_secs(5),
        || t.log().contains("2001:db8::"),
    );
}

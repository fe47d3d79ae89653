//! SPEC §3.1 (the `__cflb` cookie) and §3.2 `none` / `cookie`, end to end.

#![allow(clippy::unwrap_used)]

use crate::common::*;

fn cookie_lb(ups: &[&Upstream], attrs: &str) -> String {
    one_pool(ups, &format!("    session_affinity: cookie\n{attrs}"))
}

fn start3(attrs: &str) -> (Tether, [Upstream; 3]) {
    start_three(&format!("    session_affinity: cookie\n{attrs}"))
}

#[test]
fn cookie_pins_to_same_endpoint() {
    let (t, _ups) = start3("");
    let c = client();
    let first = get(&c, &t.url("/"), None, &[]);
    assert_eq!(first.status, 200);
    let token = first.cflb().expect("first visit sets __cflb");
    let home = first.endpoint().to_string();
    let cookie = format!("__cflb={token}");
    for _ in 0..50 {
        let r = get(&c, &t.url("/cart"), None, &[("cookie", &cookie)]);
        assert_eq!((r.status, r.endpoint()), (200, home.as_str()));
        assert!(
            r.set_cookies().is_empty(),
            "an honoured pin is not re-set: {:?}",
            r.set_cookies()
        );
    }
}

#[test]
fn fresh_clients_spread_by_weight() {
    let ups = [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("z"),
    ];
    let body = format!(
        "pools:\n  - id: web\n    endpoints:\n      - {{ name: a, address: \"{}\", weight: 1.0 }}\n      - {{ name: b, address: \"{}\", weight: 0.5 }}\n      - {{ name: z, address: \"{}\", weight: 0 }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        ups[0].addr, ups[1].addr, ups[2].addr
    );
    let t = Tether::start(&body);
    let c = client();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..300 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert!(r.cflb().is_some());
        *counts.entry(r.endpoint().to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        ups[2].request_count(),
        0,
        "weight 0 gets no new session: {counts:?}"
    );
    let (a, b) = (
        counts.get("a").copied().unwrap_or(0),
        counts.get("b").copied().unwrap_or(0),
    );
    // Expected 200 : 100; the bounds are over 5 standard deviations wide.
    assert!(
        (150..=250).contains(&a) && (50..=150).contains(&b),
        "{counts:?}"
    );
}

#[test]
fn tampered_cookies_are_treated_as_absent() {
    let (t, _ups) = start3("");
    let c = client();
    let token = get(&c, &t.url("/"), None, &[]).cflb().unwrap();
    let mut flipped = token.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases = [
        ("tampered", flipped),
        ("truncated", token[..token.len() - 3].to_string()),
        ("extended", format!("{token}AAAA")),
        ("oversized", "A".repeat(4000)),
        ("garbage", "%00<script>alert(1)</script>".to_string()),
        ("empty", String::new()),
        ("unicode", "ünïcødé".to_string()),
    ];
    for (what, value) in cases {
        let r = get(
            &c,
            &t.url("/"),
            None,
            &[("cookie", &format!("__cflb={value}"))],
        );
        assert_eq!(r.status, 200, "{what}");
        assert!(r.cflb().is_some(), "{what}: a fresh cookie is set");
    }
}

#[test]
fn cookie_from_another_key_is_treated_as_absent() {
    let (t1, ups) = start3("");
    let other = Tether::start(&cookie_lb(&[&ups[0], &ups[1], &ups[2]], ""));
    let c = client();
    let token = get(&c, &t1.url("/"), None, &[]).cflb().unwrap();
    // Same secret: the other instance honours it (no new cookie).
    let r = get(
        &c,
        &other.url("/"),
        None,
        &[("cookie", &format!("__cflb={token}"))],
    );
    assert!(r.cflb().is_none(), "same secret, same balancer: honoured");
    // A different secret: treated as absent.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "{}{}",
        head(dir.path(), port),
        cookie_lb(&[&ups[0], &ups[1], &ups[2]], "")
    )
    .replace(SECRET, "a completely different secret of 32+ bytes");
    let foreign = Tether::start_with(dir, port, &yaml);
    let r = get(
        &c,
        &foreign.url("/"),
        None,
        &[("cookie", &format!("__cflb={token}"))],
    );
    assert_eq!(r.status, 200);
    assert!(r.cflb().is_some(), "foreign key: re-pinned");
}

#[test]
fn cookie_of_removed_endpoint_is_treated_as_absent() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let t = Tether::start(&cookie_lb(&[&ups[0], &ups[1]], ""));
    let c = client();
    let (token, home) = loop {
        let r = get(&c, &t.url("/"), None, &[]);
        if r.endpoint() == "a" {
            break (r.cflb().unwrap(), r.endpoint().to_string());
        }
    };
    assert_eq!(home, "a");
    let t2 = Tether::start(&cookie_lb(&[&ups[1]], ""));
    let r = get(
        &c,
        &t2.url("/"),
        None,
        &[("cookie", &format!("__cflb={token}"))],
    );
    assert_eq!((r.status, r.endpoint()), (200, "b"));
    assert!(r.cflb().is_some());
}

#[test]
fn several_cflb_cookies_first_valid_wins() {
    let (t, _ups) = start3("");
    let c = client();
    let (token, home) = {
        let r = get(&c, &t.url("/"), None, &[]);
        (r.cflb().unwrap(), r.endpoint().to_string())
    };
    let cookie = format!("__cflb=forged; a=1; __cflb={token}; __cflb=also-forged");
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(r.endpoint(), home);
        assert!(r.cflb().is_none());
    }
}

#[test]
fn cflb_is_not_forwarded_and_other_cookies_pass_unchanged() {
    let (t, ups) = start3("");
    let c = client();
    let token = get(&c, &t.url("/"), None, &[]).cflb().unwrap();
    let sent = format!("session=abc%20def; __cflb={token}; cart=\"x,y\"");
    get(&c, &t.url("/check"), None, &[("cookie", &sent)]);
    let seen: Vec<_> = ups
        .iter()
        .flat_map(|u| u.requests())
        .filter(|s| s.path == "/check")
        .collect();
    assert_eq!(seen.len(), 1);
    let cookie = seen[0].headers.get("cookie").unwrap().to_str().unwrap();
    assert_eq!(cookie, "session=abc%20def; cart=\"x,y\"");
    // A request whose only cookie is __cflb reaches the upstream with no Cookie header at all.
    get(
        &c,
        &t.url("/only"),
        None,
        &[("cookie", &format!("__cflb={token}"))],
    );
    let seen: Vec<_> = ups
        .iter()
        .flat_map(|u| u.requests())
        .filter(|s| s.path == "/only")
        .collect();
    assert!(seen[0].headers.get("cookie").is_none());
}

fn attributes(attrs: &str, always_https: bool) -> String {
    let (t, _ups) = start3(&format!(
        "    always_use_https: {always_https}\n    session_affinity_attributes: {{ {attrs} }}\n"
    ));
    let r = get(&client(), &t.url("/"), None, &[]);
    r.set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__cflb="))
        .unwrap()
}

#[test]
fn cookie_attributes_follow_secure_and_samesite() {
    let plain = attributes("", false);
    for part in [
        "HttpOnly",
        "Path=/",
        "Max-Age=82800",
        "Expires=",
        "SameSite=Lax",
    ] {
        assert!(plain.contains(part), "{part} missing: {plain}");
    }
    assert!(
        !plain.contains("Secure"),
        "Auto over plain HTTP is not Secure: {plain}"
    );

    let always = attributes("secure: Always", false);
    assert!(
        always.contains("Secure") && always.contains("SameSite=None"),
        "{always}"
    );

    let never = attributes("secure: Never, samesite: Strict", false);
    assert!(
        !never.contains("Secure") && never.contains("SameSite=Strict"),
        "{never}"
    );

    let lax = attributes("secure: Always, samesite: Lax", false);
    assert!(
        lax.contains("Secure") && lax.contains("SameSite=Lax"),
        "{lax}"
    );

    let none = attributes("samesite: None, secure: Always", false);
    assert!(
        none.contains("SameSite=None") && none.contains("Secure"),
        "{none}"
    );
}

#[test]
fn cookie_ttl_sets_max_age() {
    let (t, _ups) = start3("    session_affinity_ttl: 1800\n");
    let c = get(&client(), &t.url("/"), None, &[])
        .set_cookies()
        .join("\n");
    assert!(c.contains("Max-Age=1800"), "{c}");
}

#[test]
fn affinity_none_sets_no_cookie_and_balances_every_request() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let body = cookie_lb(&[&ups[0], &ups[1]], "")
        .replace("session_affinity: cookie", "session_affinity: none");
    let t = Tether::start(&body);
    let c = client();
    for _ in 0..40 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!(r.status, 200);
        assert!(r.set_cookies().is_empty());
    }
    assert!(ups[0].request_count() > 0 && ups[1].request_count() > 0);
}

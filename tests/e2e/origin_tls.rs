//! SPEC §3.8 origins over TLS, end to end against real TLS upstreams with certificates made at
//! test time: verification on (custom CA) and off, the SNI sent, h2 by ALPN, connection reuse,
//! and every kind of handshake or certificate failure as a connect failure for §3.4 failover.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::ops::*;
use crate::common::tls_upstream::*;
use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

/// One endpoint line with a `tls:` block.
fn tls_endpoint(name: &str, addr: impl std::fmt::Display, tls: &str) -> String {
    format!("      - {{ name: {name}, address: \"{addr}\", tls: {{ {tls} }} }}\n")
}

/// A pool `web` of `endpoints` behind one balancer `*`.
fn single(endpoints: &str) -> String {
    format!(
        "pools:\n  - id: web\n    endpoints:\n{endpoints}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n"
    )
}

fn get_once(t: &Tether, path: &str) -> Resp {
    get(&client(), &t.url(path), None, &[])
}

/// An upstream `name` whose certificate for `origin.test` comes from a fresh CA (offering h2 by
/// ALPN when `h2`), and the endpoint `tls:` settings that verify it against that CA in `dir`.
fn verified_origin(dir: &std::path::Path, name: &str, h2: bool) -> (TlsUpstream, String) {
    let ca = Ca::new("tether test CA");
    let up = TlsUpstream::start(name, &ca.issue(&["origin.test"], "origin.test", false), h2);
    let tls = format!(
        "enabled: true, sni: origin.test, ca_path: {}",
        ca.write(dir, "ca").display()
    );
    (up, tls)
}

#[test]
fn verified_origin_behind_a_custom_ca_is_reached_over_tls_with_the_configured_sni() {
    let dir = tempfile::tempdir().unwrap();
    let (up, tls) = verified_origin(dir.path(), "tls-a", false);
    let t = Tether::start(&single(&tls_endpoint("a", up.addr, &tls)));
    for _ in 0..3 {
        let r = get_once(&t, "/x");
        assert_eq!(
            (r.status, r.endpoint()),
            (200, "tls-a"),
            "{r:?}\n{}",
            t.log()
        );
    }
    assert_eq!(up.requests().len(), 3);
    assert!(!up.snis().is_empty());
    assert!(
        up.snis()
            .iter()
            .all(|s| s.as_deref() == Some("origin.test")),
        "{:?}",
        up.snis()
    );
}

#[test]
fn sni_defaults_to_the_host_override() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let up = TlsUpstream::start("tls-a", &ca.issue(&["app.internal"], "app", false), false);
    let ca_path = ca.write(dir.path(), "ca");
    let endpoint = format!(
        "      - {{ name: a, address: \"{}\", header: {{ Host: [\"app.internal:8443\"] }} }}\n",
        up.addr
    );
    // The pool's block turns TLS on for its endpoints; the endpoint names no SNI.
    let body = single(&endpoint).replace(
        "    endpoints:\n",
        &format!(
            "    tls: {{ enabled: true, ca_path: {} }}\n    endpoints:\n",
            ca_path.display()
        ),
    );
    let t = Tether::start(&body);
    let r = get_once(&t, "/");
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "tls-a"),
        "{r:?}\n{}",
        t.log()
    );
    assert_eq!(up.snis(), vec![Some("app.internal".to_string())]);
    assert_eq!(up.requests()[0].headers["host"], "app.internal:8443");
}

#[test]
fn verify_false_accepts_a_self_signed_origin_and_warns_once() {
    let up = TlsUpstream::start("tls-a", &self_signed_leaf(&["elsewhere.test"], "x"), false);
    let t = Tether::start(&single(&tls_endpoint(
        "a",
        up.addr,
        "enabled: true, verify: false",
    )));
    let r = get_once(&t, "/");
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "tls-a"),
        "{r:?}\n{}",
        t.log()
    );
    let warning = "web/a: origin TLS with verify: false accepts any certificate";
    // A reload does not repeat it.
    let log = t.dir.path().join("tether.log");
    let before = count_in(&log, "reloaded ");
    signal(t.pid(), "HUP");
    wait_for("the reload", LONG, || count_in(&log, "reloaded ") > before);
    assert_eq!(t.log().matches(warning).count(), 1, "{}", t.log());
}

#[test]
fn h2_to_an_origin_that_offers_it_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (up, tls) = verified_origin(dir.path(), "h2-a", true);
    let t = Tether::start(&single(&tls_endpoint("a", up.addr, &tls)));
    for _ in 0..5 {
        let r = get_once(&t, "/h2");
        assert_eq!(
            (r.status, r.endpoint()),
            (200, "h2-a"),
            "{r:?}\n{}",
            t.log()
        );
    }
    assert!(up.h2_connections() >= 1);
    assert_eq!(
        up.h2_connections(),
        up.handshakes(),
        "every connection is h2"
    );
    assert_eq!(up.requests().len(), 5);
}

#[test]
fn h2_origin_gets_the_host_override_as_its_authority_from_h1_and_h2_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let up = TlsUpstream::start("h2-a", &ca.issue(&["app.internal"], "app", false), true);
    let ca_path = ca.write(dir.path(), "ca");
    let (cert, key) = ca
        .issue(&["localhost"], "listener", false)
        .write(dir.path(), "l");
    let tls_port = free_port();
    let port = free_port();
    let yaml = format!(
        "{}{}",
        head_with_tls(dir.path(), port, tls_port, &cert, &key),
        single(&format!(
            "      - {{ name: a, address: \"{}\", header: {{ Host: [app.internal] }}, tls: {{ enabled: true, ca_path: {} }} }}\n",
            up.addr,
            ca_path.display()
        ))
    );
    let t = Tether::start_with(dir, port, &yaml);
    wait_for("the TLS listener", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    let r = get(&client(), &t.url("/h1"), Some("shop.example"), &[]);
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "h2-a"),
        "{r:?}\n{}",
        t.log()
    );
    let h2 = reqwest::blocking::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = h2
        .get(format!("https://localhost:{tls_port}/h2"))
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200, "{}", t.log());
    assert_eq!(up.authorities(), vec!["app.internal", "app.internal"]);
}

#[test]
fn tls_origin_connections_are_pooled_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (up, tls) = verified_origin(dir.path(), "tls-a", false);
    let t = Tether::start(&single(&tls_endpoint("a", up.addr, &tls)));
    let c = client();
    for _ in 0..20 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.requests().len(), 20);
    assert_eq!(
        (up.connections(), up.handshakes()),
        (1, 1),
        "20 sequential requests share one upstream TLS connection"
    );
}

#[test]
fn an_origin_reached_by_ip_is_verified_against_its_ip_san() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let up = TlsUpstream::start("tls-a", &ca.issue(&["127.0.0.1"], "origin", false), true);
    let tls = format!(
        "enabled: true, ca_path: {}",
        ca.write(dir.path(), "ca").display()
    );
    let t = Tether::start(&single(&tls_endpoint("a", up.addr, &tls)));
    let c = client();
    for _ in 0..3 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!(
            (r.status, r.endpoint()),
            (200, "tls-a"),
            "{r:?}\n{}",
            t.log()
        );
    }
    assert_eq!(
        up.snis()[0],
        None,
        "no SNI is sent for an address (RFC 6066)"
    );
}

#[test]
fn https_monitor_uses_the_endpoints_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let trusted = TlsUpstream::start("trusted", &ca.issue(&["origin.test"], "o", false), false);
    let selfsigned = self_signed_leaf(&["origin.test"], "o");
    let strict = TlsUpstream::start("strict", &selfsigned, false);
    let loose = TlsUpstream::start("loose", &selfsigned, false);
    let by_ip = TlsUpstream::start("by-ip", &ca.issue(&["127.0.0.2"], "o", false), false);
    let cn_only = TlsUpstream::start("cn-only", &ca.issue(&[], "origin.test", false), false);
    let ca_tls = format!(
        "enabled: true, sni: origin.test, ca_path: {}",
        ca.write(dir.path(), "ca").display()
    );
    let body = format!(
        "monitors:\n  - {{ id: m, type: https, path: /health, interval: 60 }}\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}{}{}{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        tls_endpoint("trusted", trusted.addr, &ca_tls),
        tls_endpoint("strict", strict.addr, &ca_tls),
        tls_endpoint("cn-only", cn_only.addr, &ca_tls),
        tls_endpoint(
            "loose",
            loose.addr,
            "enabled: true, verify: false, sni: origin.test"
        ),
    )
    .replace(
        "load_balancers:",
        &format!(
            "{}load_balancers:",
            tls_endpoint(
                "by-ip",
                by_ip.addr,
                &ca_tls.replace("sni: origin.test, ", "")
            )
        ),
    );
    let t = Tether::start(&body);
    wait_for("the strict endpoint to fail its check", LONG, || {
        t.log()
            .contains("web/strict unhealthy: connect: InvalidCert (TLS connect() failed: ")
    });
    wait_for("the endpoint by address to fail its check", LONG, || {
        t.log().contains(
            "web/by-ip unhealthy: connect: InvalidCert (TLS connect() failed: certificate does not name 127.0.0.1)",
        )
    });
    wait_for(
        "the endpoint named only in its CN to fail its check",
        LONG,
        || {
            t.log().contains(
            "web/cn-only unhealthy: connect: InvalidCert (TLS connect() failed: certificate does not name origin.test)",
        )
        },
    );
    for name in ["trusted", "loose"] {
        wait_for("the first checks", LONG, || {
            t.log().contains(&format!("web/{name} first check passed"))
        });
    }
    assert_eq!(trusted.snis()[0].as_deref(), Some("origin.test"));
    let c = client();
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert!(!["strict", "by-ip", "cn-only"].contains(&r.endpoint()));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn config_test_names_an_unreadable_ca_path_and_unknown_tls_fields() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}pools:\n  - id: web\n    tls: {{ enabled: true, ca_path: /nonexistent/ca.pem }}\n    endpoints:\n\
         \x20     - {{ name: a, address: \"127.0.0.1:1\", tls: {{ verfy: false }} }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        head(dir.path(), free_port())
    );
    let (ok, out) = config_test(&yaml);
    assert!(!ok, "{out}");
    assert!(
        out.contains("pools[0].endpoints[0].tls.verfy: unknown field `verfy`"),
        "{out}"
    );
    let fixed = yaml.replace("verfy", "verify");
    let (ok, out) = config_test(&fixed);
    assert!(!ok);
    assert!(
        out.contains("pools[0].tls.ca_path: /nonexistent/ca.pem cannot be read"),
        "{out}"
    );
}

/// An upstream serving a leaf for `names` with subject CN `cn` from a fresh CA (offering h2 by
/// ALPN: the failover tests cover HTTP/1.1), and a tether reaching it over TLS with `sni`
/// (verified against that CA).
fn origin_named(
    dir: &std::path::Path,
    names: &[&str],
    cn: &str,
    sni: &str,
) -> (TlsUpstream, Tether) {
    let ca = Ca::new("tether test CA");
    let up = TlsUpstream::start("tls-a", &ca.issue(names, cn, false), true);
    let tls = format!(
        "enabled: true, sni: \"{sni}\", ca_path: {}",
        ca.write(dir, "ca").display()
    );
    let t = Tether::start(&single(&tls_endpoint("a", up.addr, &tls)));
    (up, t)
}

/// Asserts that `t` refuses its origin's certificate for not naming `name`: 502, nothing sent,
/// and a refused connection is never used by a later request.
fn assert_refused(t: &Tether, up: &TlsUpstream, name: &str) {
    for _ in 0..2 {
        let r = get_once(t, "/");
        assert_eq!(r.status, 502, "{r:?}\n{}", t.log());
    }
    assert!(up.handshakes() >= 1, "the handshake itself succeeded");
    assert!(up.requests().is_empty(), "nothing reached the origin");
    let why = format!("certificate does not name {name} (InvalidCert)");
    assert!(t.log().contains(&why), "{}", t.log());
}

#[test]
fn cn_only_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let name = "origin.example.test";
    let (up, t) = origin_named(dir.path(), &[], name, name);
    assert_refused(&t, &up, name);
}

#[test]
fn partial_wildcard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let name = "origin.example.test";
    let (up, t) = origin_named(dir.path(), &["o*.example.test"], name, name);
    assert_refused(&t, &up, name);
}

#[test]
fn whole_label_wildcard_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (up, t) = origin_named(dir.path(), &["*.example.test"], "x", "Origin.Example.Test");
    let r = get_once(&t, "/");
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "tls-a"),
        "{r:?}\n{}",
        t.log()
    );
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn sni_with_trailing_dot_works() {
    let dir = tempfile::tempdir().unwrap();
    let (up, t) = origin_named(
        dir.path(),
        &["origin.example.test"],
        "x",
        "origin.example.test.",
    );
    let r = get_once(&t, "/");
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "tls-a"),
        "{r:?}\n{}",
        t.log()
    );
    assert_eq!(up.snis(), vec![Some("origin.example.test".to_string())]);
}

#[test]
fn ipv6_host_override_gives_a_bare_sni() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let up = TlsUpstream::start_on("[::1]:0", "tls-6", &ca.issue(&["::1"], "x", false), false);
    let endpoint = format!(
        "      - {{ name: a, address: \"{}\", header: {{ Host: [\"[::1]:8443\"] }}, tls: {{ enabled: true, ca_path: {} }} }}\n",
        up.addr,
        ca.write(dir.path(), "ca").display()
    );
    let t = Tether::start(&single(&endpoint));
    let r = get_once(&t, "/");
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "tls-6"),
        "the certificate's IP SAN ::1 names the override's host\n{r:?}\n{}",
        t.log()
    );
    // The host is an address: no SNI at all (RFC 6066), never "::1]:8443".
    assert_eq!(up.snis(), vec![None]);
    assert_eq!(up.requests()[0].headers["host"], "[::1]:8443");
}

#[test]
fn verify_false_is_shown_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let (strict, tls) = verified_origin(dir.path(), "strict", false);
    let loose = TlsUpstream::start("loose", &self_signed_leaf(&["x.test"], "x"), false);
    let admin_port = free_port();
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n{}",
        single(&format!(
            "{}{}",
            tls_endpoint("strict", strict.addr, &tls),
            tls_endpoint(
                "loose",
                loose.addr,
                "enabled: true, verify: false, sni: x.test"
            ),
        ))
    );
    let t = Tether::start(&body);
    let status = admin(admin_port, "GET", "/status", None);
    assert_eq!(status.status, 200, "{status:?}\n{}", t.log());
    let json = status.json();
    let tls_of = |name: &str| {
        json["pools"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["endpoints"].as_array().unwrap())
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no endpoint {name} in {json}"))["tls"]
            .clone()
    };
    assert_eq!(
        tls_of("loose"),
        serde_json::json!({ "enabled": true, "verify": false, "sni": "x.test" })
    );
    assert_eq!(
        tls_of("strict"),
        serde_json::json!({ "enabled": true, "verify": true, "sni": "origin.test" })
    );
    let page = admin(admin_port, "GET", "/", None).body;
    let row = |name: &str| {
        let at = page
            .find(&format!("data-endpoint=\"web/{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}:\n{page}"));
        let end = page[at..].find("</tr>").unwrap();
        page[at..at + end].to_string()
    };
    assert!(
        row("loose").contains("TLS not verified"),
        "{}",
        row("loose")
    );
    assert!(!row("strict").contains("not verified"), "{}", row("strict"));
}

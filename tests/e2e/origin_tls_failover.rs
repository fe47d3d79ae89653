//! SPEC §3.8 + §3.4: every kind of origin TLS failure — expired, self-signed with verify on,
//! wrong name (also only in the CN, or by a partial wildcard), a certificate that does not name
//! the address, a failed handshake — is a connect failure: `none` answers 502, `temporary`
//! serves elsewhere and keeps the cookie, `sticky` serves elsewhere and re-pins; the log says
//! why.

#![allow(clippy::unwrap_used)]

use crate::common::tls_upstream::*;
use crate::common::*;
use tether::affinity::token::CookieKeys;
use tether::affinity::EndpointId;

/// One endpoint line with a `tls:` block.
fn tls_endpoint(name: &str, addr: impl std::fmt::Display, tls: &str) -> String {
    format!("      - {{ name: {name}, address: \"{addr}\", tls: {{ {tls} }} }}\n")
}

/// How the endpoint `bad` fails.
enum Bad {
    /// A certificate signed by the trusted CA that expired last year.
    Expired,
    /// A self-signed certificate, with verification on.
    SelfSigned,
    /// A certificate signed by the trusted CA for another name.
    WrongName,
    /// A plain HTTP server where TLS is expected: the handshake itself fails.
    NoTls,
    /// Reached by IP address (no `sni`), with a certificate signed by the trusted CA that names
    /// another address.
    OtherIp,
    /// A certificate signed by the trusted CA naming the origin only in its subject CN.
    CnOnly,
    /// A certificate signed by the trusted CA whose only name is a partial wildcard
    /// (`o*.example.test`, for `origin.example.test`).
    PartialWildcard,
}

/// Three balancers over one pool {bad, good} — `none.test`, `temporary.test`, `sticky.test`
/// — and a session of each pinned to `bad`; checks what every mode does when `bad` fails.
fn fails_over(kind: Bad, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let leaf = match kind {
        Bad::Expired => Some(ca.issue(&["origin.test"], "origin.test", true)),
        Bad::SelfSigned => Some(self_signed_leaf(&["origin.test"], "origin.test")),
        Bad::WrongName => Some(ca.issue(&["other.test"], "other.test", false)),
        Bad::NoTls => None,
        Bad::OtherIp => Some(ca.issue(&["127.0.0.2", "origin.test"], "origin.test", false)),
        Bad::CnOnly => Some(ca.issue(&[], "origin.test", false)),
        Bad::PartialWildcard => Some(ca.issue(&["o*.example.test"], "origin.test", false)),
    };
    let tls_bad = leaf.map(|l| TlsUpstream::start("bad", &l, false));
    let plain_bad = Upstream::start("bad");
    let bad_addr = tls_bad.as_ref().map_or(plain_bad.addr, |u| u.addr);
    let good = Upstream::start("good");
    let sni = match kind {
        Bad::OtherIp => "",
        Bad::PartialWildcard => "sni: origin.example.test, ",
        _ => "sni: origin.test, ",
    };
    let tls = format!(
        "enabled: true, {sni}ca_path: {}",
        ca.write(dir.path(), "ca").display()
    );
    let lb = |name: &str, mode: &str| {
        format!(
            "  - name: {name}\n    default_pools: [web]\n    session_affinity: cookie\n\
             \x20   session_affinity_attributes: {{ zero_downtime_failover: {mode} }}\n"
        )
    };
    let body = format!(
        "pools:\n  - id: web\n    endpoints:\n{}{}load_balancers:\n{}{}{}",
        tls_endpoint("bad", bad_addr, &tls),
        endpoints(&[&good]),
        lb("none.test", "none"),
        lb("temporary.test", "temporary"),
        lb("sticky.test", "sticky"),
    );
    let t = Tether::start(&body);
    let keys = CookieKeys::new(&[SECRET]);
    let expires = tether::clock::unix_now() + 3600;
    let cookie = |lb: &str| {
        format!(
            "__cflb={}",
            keys.mint(lb, EndpointId::of("web", "bad"), expires)
        )
    };
    let c = client();

    let r = get(
        &c,
        &t.url("/"),
        Some("none.test"),
        &[("cookie", &cookie("none.test"))],
    );
    assert_eq!(r.status, 502, "{r:?}\n{}", t.log());

    let temporary = cookie("temporary.test");
    for _ in 0..2 {
        let r = get(
            &c,
            &t.url("/"),
            Some("temporary.test"),
            &[("cookie", &temporary)],
        );
        assert_eq!(
            (r.status, r.endpoint()),
            (200, "good"),
            "{r:?}\n{}",
            t.log()
        );
        assert!(r.set_cookies().is_empty(), "temporary keeps the cookie");
    }

    let r = get(
        &c,
        &t.url("/"),
        Some("sticky.test"),
        &[("cookie", &cookie("sticky.test"))],
    );
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "good"),
        "{r:?}\n{}",
        t.log()
    );
    let moved = format!("__cflb={}", r.cflb().expect("sticky re-pins"));
    let r = get(&c, &t.url("/"), Some("sticky.test"), &[("cookie", &moved)]);
    assert_eq!((r.status, r.endpoint()), (200, "good"));

    let log = t.log();
    for mode in ["temporary", "sticky"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("failover-{mode} retry on web/good")))
            .unwrap_or_else(|| panic!("no failover-{mode} line:\n{log}"));
        assert!(line.contains(&format!("web/bad: {reason}")), "{line}");
    }
    assert!(log.contains("no failover: answering 502"), "{log}");
    assert_eq!(plain_bad.request_count(), 0, "nothing reached bad");
    if let Some(u) = tls_bad {
        assert!(u.requests().is_empty(), "nothing reached bad");
    }
}

#[test]
fn expired_origin_certificate_fails_over() {
    fails_over(
        Bad::Expired,
        "certificate verify failed (InvalidCert, SNI origin.test)",
    );
}

#[test]
fn self_signed_origin_certificate_with_verify_on_fails_over() {
    fails_over(
        Bad::SelfSigned,
        "certificate verify failed (InvalidCert, SNI origin.test)",
    );
}

#[test]
fn wrong_name_origin_certificate_fails_over() {
    fails_over(
        Bad::WrongName,
        "certificate does not name origin.test (InvalidCert)",
    );
}

#[test]
fn failed_origin_tls_handshake_fails_over() {
    fails_over(Bad::NoTls, "TLS handshake failed: wrong version number");
}

#[test]
fn origin_by_ip_whose_certificate_names_another_address_fails_over() {
    fails_over(
        Bad::OtherIp,
        "certificate does not name 127.0.0.1 (InvalidCert)",
    );
}

#[test]
fn origin_certificate_naming_it_only_in_its_cn_fails_over() {
    fails_over(
        Bad::CnOnly,
        "certificate does not name origin.test (InvalidCert)",
    );
}

#[test]
fn origin_certificate_with_a_partial_wildcard_fails_over() {
    fails_over(
        Bad::PartialWildcard,
        "certificate does not name origin.example.test (InvalidCert)",
    );
}

//! TLS listeners end to end: SPEC §3.1's `Secure` / `SameSite` under `Auto` on TLS requests,
//! `always_use_https` redirects, and HTTP/2 via ALPN. The certificate is made at test time.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::ops::*;
use crate::common::*;

/// Tether with a plain listener (`.port`) and a TLS one (returned), cookie affinity on `ups`.
fn start_tls(ups: &[&Upstream], lb_extra: &str) -> (Tether, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (port, tls_port) = (free_port(), free_port());
    let yaml = format!(
        "{}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n{lb_extra}",
        head_with_tls(dir.path(), port, tls_port, &cert, &key),
        endpoints(ups)
    );
    let t = Tether::start_with(dir, port, &yaml);
    wait_for("the TLS listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    (t, tls_port)
}

/// A client that trusts the test's self-signed certificate; `h2` offers only HTTP/2 by ALPN.
fn tls_client(h2: bool) -> reqwest::blocking::Client {
    let b = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .danger_accept_invalid_certs(true);
    let b = if h2 { b } else { b.http1_only() };
    b.build().unwrap()
}

fn set_cookie(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__cflb="))
        .unwrap_or_else(|| panic!("no __cflb in {:?}", r.headers()))
        .to_string()
}

#[test]
fn tls_request_gets_secure_cookie_with_samesite_none() {
    let a = Upstream::start("a");
    let (t, tls_port) = start_tls(&[&a], "");
    let r = tls_client(false)
        .get(format!("https://localhost:{tls_port}/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = set_cookie(&r);
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("SameSite=None"), "{cookie}");
    assert_eq!(
        a.requests().last().unwrap().headers["x-forwarded-proto"],
        "https"
    );
    // The same balancer over plain HTTP: no Secure, SameSite=Lax (SPEC §3.1 Auto).
    let plain = get(&client(), &t.url("/"), None, &[]);
    let c = plain.set_cookies().join("\n");
    assert!(!c.contains("Secure") && c.contains("SameSite=Lax"), "{c}");
}

#[test]
fn http2_over_tls_via_alpn() {
    let a = Upstream::start("a");
    let (_t, tls_port) = start_tls(&[&a], "");
    let c = tls_client(true);
    for _ in 0..3 {
        let r = c
            .get(format!("https://localhost:{tls_port}/h2"))
            .send()
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-endpoint"], "a");
    }
}

#[test]
fn always_use_https_redirects_plain_http_with_301() {
    let a = Upstream::start("a");
    let (t, tls_port) = start_tls(&[&a], "    always_use_https: true\n");
    let r = get(
        &client(),
        &t.url("/cart?item=1&n=2"),
        Some("Shop.Example.com:8080"),
        &[],
    );
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(
        r.headers["location"],
        "https://Shop.Example.com/cart?item=1&n=2"
    );
    assert!(r.set_cookies().is_empty(), "a redirect pins nothing");
    assert_eq!(a.request_count(), 0, "nothing is forwarded");
    // Over TLS the same balancer serves, with a Secure cookie.
    let r = tls_client(false)
        .get(format!("https://localhost:{tls_port}/cart"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookie(&r).contains("; Secure"));
}

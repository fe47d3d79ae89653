//! SPEC §3.7 and §4, request by request, over raw sockets: header values handled as bytes,
//! every `X-Forwarded-For` line counted, what a client says about itself (`Forwarded`,
//! `X-Real-IP`, ...) passed only from a trusted proxy, client bytes escaped in the access log,
//! secrets never echoed, and a token-less admin listener that a page on another site cannot drive.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::common::raw::*;
use crate::common::*;

/// tether with cookie affinity on `shop.example` (and `*`) in front of `ups`; `extra` goes
/// before `pools:`.
fn start(ups: &[&Upstream], extra: &str) -> Tether {
    Tether::start(&format!(
        "{extra}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(ups)
    ))
}

/// Pins a session and returns (`__cflb=<token>`, endpoint name).
fn pin_at(t: &Tether) -> (String, String) {
    let r = get(&client(), &t.url("/"), Some("shop.example"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    (
        format!("__cflb={}", r.cflb().unwrap()),
        r.endpoint().to_string(),
    )
}

/// The `Cookie` values an upstream saw on requests to `path`, joined as one header would be.
fn cookies_seen(up: &Upstream, path: &str) -> Vec<Vec<u8>> {
    up.requests()
        .iter()
        .filter(|s| s.path == path)
        .map(|s| {
            let all: Vec<&[u8]> = s
                .headers
                .get_all("cookie")
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            all.join(&b"; "[..])
        })
        .collect()
}

#[test]
fn utf8_cookie_keeps_the_pin_and_strips_cflb() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let t = start(&[&a, &b], "");
    let (cflb, pinned) = pin_at(&t);
    let (mine, other) = if pinned == "a" { (&a, &b) } else { (&b, &a) };
    let utf8 = format!("Cookie: {cflb}; name=caf\u{e9}");
    for _ in 0..6 {
        let r = exchange(
            t.addr(),
            &get_raw(b"/utf8", b"shop.example", &[utf8.as_bytes()]),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-endpoint"), [pinned.as_str()], "the pin holds");
        assert!(r.header("set-cookie").is_empty(), "no new pin: {r:?}");
    }
    assert_eq!(
        other
            .requests()
            .iter()
            .filter(|s| s.path == "/utf8")
            .count(),
        0
    );
    for seen in cookies_seen(mine, "/utf8") {
        assert_eq!(
            seen,
            "name=caf\u{e9}".as_bytes(),
            "{}",
            String::from_utf8_lossy(&seen)
        );
    }

    // Two Cookie headers, one with a Latin-1 byte: every other cookie arrives, __cflb does not.
    let first = format!("Cookie: a=1; {cflb}");
    let r = exchange(
        t.addr(),
        &get_raw(
            b"/two",
            b"shop.example",
            &[first.as_bytes(), b"Cookie: name=caf\xe9; z=2"],
        ),
    );
    assert_eq!(r.header("x-endpoint"), [pinned.as_str()]);
    assert!(r.header("set-cookie").is_empty(), "{r:?}");
    assert_eq!(cookies_seen(mine, "/two"), [&b"a=1; name=caf\xe9; z=2"[..]]);

    // Without __cflb, non-ASCII cookies pass untouched.
    let r = exchange(
        t.addr(),
        &get_raw(
            b"/plain",
            b"shop.example",
            &[b"Cookie: a=1", "Cookie: name=caf\u{e9}".as_bytes()],
        ),
    );
    assert_eq!(r.status, 200);
    let up = if r.header("x-endpoint") == ["a"] {
        &a
    } else {
        &b
    };
    assert_eq!(
        cookies_seen(up, "/plain"),
        ["a=1; name=caf\u{e9}".as_bytes()]
    );
}

#[test]
fn empty_cookie_secret_is_a_config_error_naming_its_path() {
    let body = "listeners:\n  - address: 127.0.0.1:1\npools:\n  - id: web\n    endpoints:\n      - { name: a, address: \"127.0.0.1:2\" }\nload_balancers:\n  - name: x\n    default_pools: [web]\n";
    for (secret, path) in [
        ("cookie_secret:\n", "cookie_secret: is empty"),
        ("cookie_secret: \"\"\n", "cookie_secret: is empty"),
        ("cookie_secret: ''\n", "cookie_secret: is empty"),
        (
            "cookie_secret:\n  - \"a first key that is long enough to sign\"\n  - \"\"\n",
            "cookie_secret[1]: is empty",
        ),
        ("cookie_secret:\n  - \"a key\"\n  -\n", "cookie_secret[1]"),
    ] {
        let (ok, out) = config_test(&format!("{secret}{body}"));
        assert!(!ok, "{secret:?} was accepted");
        assert!(out.contains(path), "{secret:?}: {out}");
    }
    let (ok, out) = config_test(body);
    assert!(
        ok,
        "leaving cookie_secret out still means a random key: {out}"
    );
}

#[test]
fn secrets_never_echoed_in_config_errors() {
    const VALUE: &str = "987654321987";
    let body = "listeners:\n  - address: 127.0.0.1:1\npools:\n  - id: web\n    endpoints:\n      - { name: a, address: \"127.0.0.1:2\" }\nload_balancers:\n  - name: x\n    default_pools: [web]\n";
    for (secret, path) in [
        (format!("admin:\n  token: {VALUE}\n"), "admin.token"),
        (format!("cookie_secret: {VALUE}\n"), "cookie_secret"),
        (format!("cookie_secret: {VALUE}.5\n"), "cookie_secret"),
        (
            format!("cookie_secret:\n  - \"a first key that is long enough\"\n  - {VALUE}\n"),
            "cookie_secret[1]",
        ),
    ] {
        let (ok, out) = config_test(&format!("{secret}{body}"));
        assert!(!ok, "{secret:?} was accepted");
        assert!(out.contains(path), "{secret:?} names no path: {out}");
        assert!(!out.contains(VALUE), "{secret:?} echoed: {out}");
    }

    // At reload: in the log and in the /reload answer.
    let up = Upstream::start("a");
    let admin_port = free_port();
    let admin =
        |token: &str| format!("admin:\n  address: 127.0.0.1:{admin_port}\n  token: {token}\n");
    let t = start(&[&up], &admin("\"first-token-for-the-test\""));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let good = std::fs::read_to_string(&t.config).unwrap();
    std::fs::write(
        &t.config,
        good.replace("\"first-token-for-the-test\"", VALUE),
    )
    .unwrap();
    let r = crate::common::ops::admin(
        admin_port,
        "POST",
        "/reload",
        Some("first-token-for-the-test"),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("admin.token"), "{}", r.body);
    assert!(
        !r.body.contains(VALUE),
        "the /reload answer echoes it: {}",
        r.body
    );
    wait_for(
        "the reload error in the log",
        Duration::from_secs(5),
        || t.log().contains("reload refused"),
    );
    assert!(!t.log().contains(VALUE), "the log echoes it:\n{}", t.log());
}

/// An admin listener without a token, in front of upstreams `a` and `b`; returns its port.
fn admin_without_token(ups: &[&Upstream]) -> (Tether, u16) {
    let port = free_port();
    let t = start(ups, &format!("admin:\n  address: 127.0.0.1:{port}\n"));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (t, port)
}

/// POSTs to the admin API with these headers, as a browser would (raw, so `Host` is as given).
fn admin_post(port: u16, path: &str, lines: &[&[u8]]) -> RawResp {
    let mut r = format!("POST {path} HTTP/1.1\r\n").into_bytes();
    for l in lines {
        r.extend_from_slice(l);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(
        b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    exchange(SocketAddr::from(([127, 0, 0, 1], port)), &r)
}

fn state_of(port: u16, name: &str) -> String {
    let e = crate::common::ops::endpoint_status(port, "web", name);
    e["state"].as_str().unwrap().to_string()
}

#[test]
fn admin_refuses_cross_site_requests_without_token() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (_t, port) = admin_without_token(&[&a, &b]);
    let drain = "/pools/web/endpoints/a/drain";
    let own = format!("Host: 127.0.0.1:{port}");

    // CSRF: a form or fetch() on another site, no preflight for text/plain.
    let r = admin_post(
        port,
        drain,
        &[own.as_bytes(), b"Origin: https://evil.example"],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = admin_post(port, drain, &[own.as_bytes(), b"Origin: null"]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(state_of(port, "a"), "serving", "nothing was drained");

    // DNS rebinding: the attacker's name resolved to loopback.
    let foreign = format!("Host: attacker.example:{port}");
    let r = admin_post(port, drain, &[foreign.as_bytes()]);
    assert_eq!(r.status, 403, "{r:?}");
    let get = |host: &str| {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        exchange(SocketAddr::from(([127, 0, 0, 1], port)), req.as_bytes()).status
    };
    assert_eq!(get(&format!("attacker.example:{port}")), 403);
    assert_eq!(get("127.0.0.1.attacker.example"), 403);
    assert_eq!(state_of(port, "a"), "serving");

    // What a person on the machine does still works: the status page and its own buttons
    // (same origin), and curl (no Origin).
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".into(),
    ] {
        assert_eq!(get(&host), 200, "{host}");
    }
    let origin = format!("Origin: http://127.0.0.1:{port}");
    let r = admin_post(port, drain, &[own.as_bytes(), origin.as_bytes()]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(state_of(port, "a"), "serving");
    let r = crate::common::ops::admin(port, "POST", "/pools/web/endpoints/a/undrain", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(state_of(port, "a"), "serving");
}

#[test]
fn admin_token_scheme_is_case_insensitive() {
    let up = Upstream::start("a");
    let port = free_port();
    let t = start(
        &[&up],
        &format!("admin:\n  address: 127.0.0.1:{port}\n  token: \"s3cret-token\"\n"),
    );
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let status = |auth: &str| {
        let req = format!(
            "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        exchange(SocketAddr::from(([127, 0, 0, 1], port)), req.as_bytes()).status
    };
    assert_eq!(status("Bearer s3cret-token"), 200);
    assert_eq!(status("bearer s3cret-token"), 200);
    assert_eq!(status("BEARER s3cret-token"), 200);
    assert_eq!(status("Bearer s3cret-toke"), 401);
    assert_eq!(status("Basic s3cret-token"), 401);
    drop(t);
}

/// The instance id the admin API at `port` shows.
fn instance_id(port: u16) -> String {
    let s = crate::common::ops::admin(port, "GET", "/status", None).json();
    s["instance_id"].as_str().unwrap().to_string()
}

/// A TCP port forward to `target`, as a NAT rule or `socat` would be: validation cannot see
/// where it leads. Returns its address and the number of connections it has taken.
fn port_forward(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            count.fetch_add(1, SeqCst);
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
    (addr, taken)
}

/// Copies `from` to `to` on its own thread until `from` ends, then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[test]
fn request_with_our_via_gets_508() {
    let a = Upstream::start("a");
    let (t, port) = admin_without_token(&[&a]);
    let id = instance_id(port);
    assert_eq!(id.len(), 16, "{id}");
    let alone = format!("Via: 1.1 tether-{id}");
    let listed = format!("Via: 1.0 corp-proxy, 2 TETHER-{}", id.to_uppercase());
    let cases: [&[&[u8]]; 2] = [&[alone.as_bytes()], &[b"Via: 1.1 edge", listed.as_bytes()]];
    for lines in cases {
        let r = exchange(t.addr(), &get_raw(b"/looped", b"shop.example", lines));
        assert_eq!(r.status, 508, "{r:?}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("loop detected"),
            "{r:?}"
        );
    }
    assert_eq!(a.request_count(), 0, "nothing was forwarded");
    // Another tether in the chain (a different id), or an id that merely starts with ours.
    let other: String = id
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    for via in [
        format!("Via: 1.1 tether-{other}"),
        format!("Via: 1.1 tether-{id}0"),
    ] {
        let r = exchange(
            t.addr(),
            &get_raw(b"/chained", b"shop.example", &[via.as_bytes()]),
        );
        assert_eq!(r.status, 200, "{via}: {r:?}");
    }
    assert_eq!(a.request_count(), 2);
    let metrics = crate::common::ops::admin(port, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("tether_refused_requests_total{reason=\"loop\"} 2"),
        "{metrics}"
    );
    assert_eq!(t.log().matches("508 loop").count(), 2, "{}", t.log());
}

#[test]
fn upstream_sees_our_via() {
    let a = Upstream::start("a");
    let (t, port) = admin_without_token(&[&a]);
    let ours = format!("1.1 tether-{}", instance_id(port));
    let r = exchange(
        t.addr(),
        &get_raw(b"/via", b"shop.example", &[b"Via: 1.0 corp-proxy"]),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = exchange(t.addr(), &get_raw(b"/via-none", b"shop.example", &[]));
    assert_eq!(r.status, 200, "{r:?}");
    let seen = a.requests();
    let via = |i: usize| -> Vec<String> {
        let lines = seen[i].headers.get_all("via").iter();
        lines.map(|v| v.to_str().unwrap().to_string()).collect()
    };
    assert_eq!(via(0), ["1.0 corp-proxy".to_string(), ours.clone()]);
    assert_eq!(via(1), [ours]);
}

#[test]
fn loop_through_a_port_forward_ends_after_one_hop() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (forward, taken) = port_forward(SocketAddr::from(([127, 0, 0, 1], port)));
    let yaml = format!(
        "{}pools:\n  - id: web\n    endpoints:\n      - {{ name: fwd, address: \"{forward}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        head(dir.path(), port)
    );
    let t = Tether::start_with(dir, port, &yaml);
    let r = exchange(t.addr(), &get_raw(b"/around", b"shop.example", &[]));
    // The second pass answers 508; the first relays it. Without the check, each pass would
    // open another connection until limits.max_connections.
    assert_eq!(r.status, 508, "{r:?}");
    assert_eq!(taken.load(SeqCst), 1);
}

#[test]
fn admin_refuses_requests_through_the_proxy() {
    // An endpoint that reaches the admin listener by a way validation cannot see.
    let admin_port = free_port();
    let (forward, _) = port_forward(SocketAddr::from(([127, 0, 0, 1], admin_port)));
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n      - {{ name: fwd, address: \"{forward}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n"
    ));
    wait_for("the admin listener", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let c = client();
    for (method, path) in [
        ("POST", "/pools/web/endpoints/fwd/drain"),
        ("POST", "/reload"),
        ("GET", "/status"),
    ] {
        let r = c
            .request(method.parse().unwrap(), t.url(path))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{method} {path}");
        let body = r.text().unwrap();
        assert!(body.contains("came through tether's own proxy"), "{body}");
    }
    assert_eq!(
        state_of(admin_port, "fwd"),
        "serving",
        "nothing was drained"
    );
    // Sent straight to the admin port, our Via is refused too; without it, the same works.
    let id = instance_id(admin_port);
    let via = format!("Via: 1.1 tether-{id}");
    let own = format!("Host: 127.0.0.1:{admin_port}");
    let drain = "/pools/web/endpoints/fwd/drain";
    let r = admin_post(admin_port, drain, &[own.as_bytes(), via.as_bytes()]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(admin_post(admin_port, drain, &[own.as_bytes()]).status, 200);
    assert_eq!(state_of(admin_port, "fwd"), "drained");
}

/// The access-log message (after `] `) of the one line that mentions `marker`.
fn access_line(t: &Tether, marker: &str) -> String {
    let mut line = String::new();
    wait_for(
        &format!("an access line for {marker}"),
        Duration::from_secs(5),
        || {
            let log = t.log();
            match log
                .lines()
                .find(|l| l.contains(" access] ") && l.contains(marker))
            {
                Some(l) => {
                    line = l.split_once("] ").unwrap().1.to_string();
                    true
                }
                None => false,
            }
        },
    );
    line
}

#[test]
fn x_forwarded_for_every_line_reaches_upstream_in_order() {
    let up = Upstream::start("a");
    let t = start(&[&up], "");
    let r = exchange(
        t.addr(),
        &get_raw(
            b"/xff",
            b"shop.example",
            &[
                b"X-Forwarded-For: 203.0.113.9",
                b"X-Forwarded-For: 198.51.100.1, 198.51.100.2",
            ],
        ),
    );
    assert_eq!(r.status, 200);
    let seen = up.requests();
    let xff: Vec<&str> = seen[0]
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(xff, ["203.0.113.9, 198.51.100.1, 198.51.100.2, 127.0.0.1"]);
}

#[test]
fn x_forwarded_for_hops_with_ports_and_later_lines_name_the_client() {
    let up = Upstream::start("a");
    let t = start(&[&up], "trusted_proxies: [\"127.0.0.0/8\"]\n");
    let cases: [(&str, &[&[u8]], &str); 3] = [
        (
            "/port",
            &[b"X-Forwarded-For: 203.0.113.9:4711"],
            "203.0.113.9",
        ),
        (
            "/v6port",
            &[b"X-Forwarded-For: [2001:db8::7]:443, 127.0.0.2:1"],
            "2001:db8::7",
        ),
        (
            "/lines",
            &[
                b"X-Forwarded-For: 198.51.100.1",
                b"X-Forwarded-For: 203.0.113.8, 127.0.0.9",
            ],
            "203.0.113.8",
        ),
    ];
    for (path, lines, client) in cases {
        let r = exchange(t.addr(), &get_raw(path.as_bytes(), b"shop.example", lines));
        assert_eq!(r.status, 200);
        let line = access_line(&t, &format!(" \"GET {path}\" "));
        assert!(line.starts_with(&format!("{client} ")), "{path}: {line}");
    }
}

/// Every value of `name` the upstream saw on the request to `path`.
fn seen_values(up: &Upstream, path: &str, name: &str) -> Vec<String> {
    let seen = up.requests();
    let req = seen.iter().find(|s| s.path == path).unwrap();
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// What a client might claim about itself: address, original host, port.
const CLAIMS: [(&str, &str); 5] = [
    (
        "forwarded",
        "for=198.51.100.66;host=bank.example;proto=https",
    ),
    ("x-real-ip", "198.51.100.66"),
    ("X-Real-IP", "10.0.0.1"),
    ("x-forwarded-host", "bank.example"),
    ("x-forwarded-port", "443"),
];

#[test]
fn client_claims_about_itself_are_dropped_from_an_untrusted_peer_and_x_real_ip_set() {
    let up = Upstream::start("a");
    let t = start(&[&up], "trusted_proxies: [\"127.0.0.2\"]\n");
    let mut headers = CLAIMS.to_vec();
    headers.push(("x-forwarded-for", "198.51.100.66"));
    let r = get(
        &client(),
        &t.url("/untrusted"),
        Some("shop.example"),
        &headers,
    );
    assert_eq!(r.status, 200);
    for name in ["forwarded", "x-forwarded-host", "x-forwarded-port"] {
        assert_eq!(
            seen_values(&up, "/untrusted", name),
            Vec::<String>::new(),
            "{name} from an untrusted peer reached the upstream"
        );
    }
    // The peer's address, not the one it claimed in X-Real-IP or X-Forwarded-For.
    assert_eq!(seen_values(&up, "/untrusted", "x-real-ip"), ["127.0.0.1"]);
    // Set even when the client sent none.
    get(&client(), &t.url("/plain"), Some("shop.example"), &[]);
    assert_eq!(seen_values(&up, "/plain", "x-real-ip"), ["127.0.0.1"]);
}

#[test]
fn a_trusted_proxys_forwarded_headers_pass_and_x_real_ip_is_the_client_it_names() {
    let up = Upstream::start("a");
    let t = start(&[&up], "trusted_proxies: [\"127.0.0.2\"]\n");
    let proxy = client_from("127.0.0.2".parse().unwrap());
    let forwarded = [
        ("forwarded", "for=203.0.113.7;host=shop.example;proto=https"),
        ("x-forwarded-host", "shop.example"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let mut headers = forwarded.to_vec();
    headers.push(("x-real-ip", "203.0.113.7"));
    let r = get(&proxy, &t.url("/trusted"), Some("shop.example"), &headers);
    assert_eq!(r.status, 200);
    for (name, value) in &forwarded[..3] {
        assert_eq!(seen_values(&up, "/trusted", name), [*value], "{name}");
    }
    assert_eq!(seen_values(&up, "/trusted", "x-real-ip"), ["203.0.113.7"]);
    // X-Real-IP is always the client tether routes by: the right-most untrusted hop of
    // X-Forwarded-For, whatever X-Real-IP the proxy sent; without a chain, the proxy itself.
    let mut disagreeing = forwarded.to_vec();
    disagreeing.push(("x-real-ip", "198.51.100.99"));
    get(
        &proxy,
        &t.url("/disagree"),
        Some("shop.example"),
        &disagreeing,
    );
    assert_eq!(seen_values(&up, "/disagree", "x-real-ip"), ["203.0.113.7"]);
    assert_eq!(
        seen_values(&up, "/disagree", "x-forwarded-host"),
        ["shop.example"]
    );
    get(
        &proxy,
        &t.url("/no-chain"),
        Some("shop.example"),
        &[("x-real-ip", "198.51.100.99")],
    );
    assert_eq!(seen_values(&up, "/no-chain", "x-real-ip"), ["127.0.0.2"]);
}

#[test]
fn host_cannot_forge_access_log_fields() {
    let b = Upstream::start("b");
    let t = start(&[&b], "");
    // What the HTTP/1 parser lets through: quotes and spaces in Host (the forgery of issue
    // 11), a quote and a backslash in the path; then tabs and raw UTF-8 in Host.
    let forged: &[u8] =
        b"shop.example\" 200 endpoint=web/a affinity=kept upstream_ms=0.00 total_ms=0.00";
    let mut req = b"GET /forge/\"x\\y HTTP/1.1\r\nHost: ".to_vec();
    req.extend_from_slice(forged);
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let utf8 = exchange(
        t.addr(),
        &get_raw(b"/forge-utf8", b"shop.example\t\xc3\xa9 x", &[]),
    );
    assert_eq!(utf8.status, 200, "{utf8:?}");
    let r = exchange(t.addr(), &req);
    assert_eq!(r.status, 200, "{r:?}");
    // What the parser or tether refuses (a bare CR in the target), must not reach the log raw
    // either.
    for bad in [
        &b"GET /forge-raw/\xff\xfe HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"[..],
        b"GET /forge-ctl HTTP/1.1\r\nHost: shop\x01\x7f\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(exchange(t.addr(), bad).status, 400);
    }
    let _ = exchange(
        t.addr(),
        b"GET /forge-cr/\rx HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    );

    let line = access_line(&t, "/forge/");
    let log = std::fs::read(t.dir.path().join("tether.log")).unwrap();
    for raw_line in log.split(|&c| c == b'\n') {
        assert!(
            raw_line.iter().all(|&c| (0x20..0x7f).contains(&c)),
            "raw bytes in a log line: {}",
            String::from_utf8_lossy(raw_line)
        );
    }
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 9, "a field was added: {line}");
    assert_eq!(fields[0], "127.0.0.1", "{line}");
    assert!(fields[1].starts_with("shop.example"), "{line}");
    assert_eq!(fields[2], "\"GET", "{line}");
    assert!(
        fields[3].starts_with("/forge/") && fields[3].ends_with('"'),
        "{line}"
    );
    assert_eq!(fields[3].matches('"').count(), 1, "{line}");
    assert_eq!(fields[4], "200", "{line}");
    assert_eq!(fields[5], "endpoint=web/b", "{line}");
    assert!(
        fields[6].starts_with("affinity=") && fields[6] != "affinity=kept",
        "{line}"
    );
    assert_eq!(
        fields.iter().filter(|f| f.starts_with("endpoint=")).count(),
        1,
        "{line}"
    );
}

#[test]
fn pingora_error_lines_escape_host_and_path() {
    // An endpoint nobody listens on: the 502 is one of the failures Pingora itself logs.
    let dead = free_port();
    let t = Tether::start(&format!(
        "pools:\n  - id: web\n    endpoints:\n      - {{ name: a, address: \"127.0.0.1:{dead}\" }}\nload_balancers:\n  - name: \"*\"\n    default_pools: [web]\n"
    ));
    let r = exchange(
        t.addr(),
        &get_raw(b"/dead/\"q\\", b"shop\xff\" tries: 9", &[]),
    );
    assert_eq!(r.status, 502, "{r:?}");
    let mut line = String::new();
    wait_for("Pingora's error line", Duration::from_secs(5), || {
        let log = t.log();
        line = log
            .lines()
            .find(|l| l.contains("Fail to proxy"))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    });
    assert!(
        line.ends_with("GET /dead/\\x22q\\x5c, Host: shop\\xff\\x22\\x20tries:\\x209"),
        "{line}"
    );
    let log = std::fs::read(t.dir.path().join("tether.log")).unwrap();
    for raw_line in log.split(|&c| c == b'\n') {
        assert!(
            raw_line.iter().all(|&c| (0x20..0x7f).contains(&c)),
            "raw bytes in a log line: {}",
            String::from_utf8_lossy(raw_line)
        );
    }
}

#[test]
fn only_the_first_three_cflb_values_are_verified() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let t = start(&[&a, &b], "");
    let (cflb, pinned) = pin_at(&t);
    let send = |forged: usize| {
        let mut cookie = b"Cookie: ".to_vec();
        for i in 0..forged {
            cookie.extend_from_slice(format!("__cflb=forged{i}; ").as_bytes());
        }
        cookie.extend_from_slice(cflb.as_bytes());
        exchange(t.addr(), &get_raw(b"/", b"shop.example", &[&cookie]))
    };
    let r = send(2);
    assert_eq!(r.header("x-endpoint"), [pinned.as_str()]);
    assert!(
        r.header("set-cookie").is_empty(),
        "the third value is honoured: {r:?}"
    );
    for forged in [3, 850] {
        let r = send(forged);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("set-cookie").len(),
            1,
            "after {forged} forged values the valid one is not looked at: {r:?}"
        );
    }
}

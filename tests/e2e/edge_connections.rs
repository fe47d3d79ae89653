//! SPEC §3.7, "one client must not be able to deny service to others": header deadlines on every
//! request of a kept-alive connection, idle keep-alive and HTTP/2 timeouts, TLS connections
//! counted and timed from accept, and the memory an unfinished header may hold.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::hostile::*;
use crate::common::ops::self_signed;
use crate::common::*;

/// Tether with `limits` on a plain listener and, when `tls`, a TLS one too (its port returned).
fn start(limits: &str, tls: bool) -> (Tether, Upstream, u16) {
    let up = Upstream::start("a");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls_port = free_port();
    let mut head = head(dir.path(), port);
    if tls {
        let (cert, key) = self_signed(dir.path());
        head = head_with_tls(dir.path(), port, tls_port, &cert, &key);
    }
    let yaml = format!(
        "{head}{limits}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n",
        endpoints(&[&up])
    );
    let t = Tether::start_with(dir, port, &yaml);
    if tls {
        wait_for("the TLS listener", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
        });
    }
    (t, up, tls_port)
}

fn served(t: &Tether) -> bool {
    raw_status(t.addr(), b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n") == Some(200)
}

#[test]
fn keepalive_second_request_header_is_timed_out() {
    let (t, up, _) = start("limits:\n  request_header_timeout_seconds: 1\n", false);
    let mut s = served_once(t.addr(), "shop.example");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n")
        .unwrap();
    // Trickle the rest of the second header a byte at a time: each read is quick, the header
    // never completes.
    let started = Instant::now();
    let mut closed = None;
    while closed.is_none() && started.elapsed() < Duration::from_secs(6) {
        let _ = s.write_all(b"X");
        closed = closed_within(&mut s, Duration::from_millis(300));
    }
    let took = started.elapsed();
    assert!(
        closed.is_some(),
        "a slow second header must end the connection"
    );
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    assert_eq!(up.request_count(), 1);
    assert!(served(&t), "still serving");
}

#[test]
fn slow_keepalive_clients_cannot_lock_the_listener() {
    let (t, _up, _) = start(
        "limits:\n  max_connections: 5\n  request_header_timeout_seconds: 1\n",
        false,
    );
    // Five connections, each served once, then holding half a second header in silence.
    let mut held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = served_once(t.addr(), "shop.example");
            s.write_all(b"GET / HTTP/1.1\r\nHost: shop.exa").unwrap();
            s
        })
        .collect();
    wait_for(
        "a normal client to be served while the slow ones hold their connections",
        Duration::from_secs(8),
        || served(&t),
    );
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            closed_within(s, Duration::from_secs(3)).is_some(),
            "every slow client is cut"
        );
    }
}

#[test]
fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let (t, _up, _) = start(
        "limits:\n  keepalive_timeout_seconds: 2\n  request_header_timeout_seconds: 1\n",
        false,
    );
    let mut s = served_once(t.addr(), "shop.example");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let idle = Instant::now();
    let closed = closed_within(&mut s, Duration::from_secs(8));
    let after = idle.elapsed();
    assert!(closed.is_some(), "idle kept-alive connection still open");
    assert!(
        after >= Duration::from_millis(1500),
        "closed after {after:?}: idle is not a slow header (timeout 1 s), keep-alive is 2 s"
    );
    assert!(served(&t));
}

#[test]
fn idle_tls_handshakes_are_counted_and_cut() {
    let (_t, _up, tls_port) = start(
        "limits:\n  max_connections: 5\n  request_header_timeout_seconds: 3\n",
        true,
    );
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            s
        })
        .collect();
    // Before the deadline: the three over the limit are refused, five are held.
    let mut closed: Vec<Option<Duration>> = silent
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(100)))
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    for (s, c) in silent.iter_mut().zip(&mut closed) {
        if c.is_none() {
            *c = closed_within(s, Duration::from_millis(50));
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "machine too slow to tell"
    );
    let refused = closed.iter().filter(|c| c.is_some()).count();
    assert_eq!(
        refused, 3,
        "TLS connections over max_connections refused at accept"
    );
    // Then every silent one is cut at the handshake deadline.
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(6)).is_some(),
            "a silent TLS connection outlived the handshake deadline"
        );
    }
    drop(silent);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{tls_port}/"))
        .header("host", "shop.example")
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a real TLS client is served once slots free up"
    );
}

#[test]
fn idle_h2_connection_is_closed() {
    let (_t, _up, tls_port) = start(
        "limits:\n  keepalive_timeout_seconds: 2\n  request_header_timeout_seconds: 5\n",
        true,
    );
    let mut s = tls_connect(tls_port, b"\x02h2");
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    s.write_all(H2_PREFACE_AND_SETTINGS).unwrap();
    let idle = Instant::now();
    let closed = closed_within(&mut s, Duration::from_secs(10));
    assert!(closed.is_some(), "an idle HTTP/2 connection stayed open");
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "closed after {:?}, before the keep-alive timeout",
        idle.elapsed()
    );
}

#[test]
fn unfinished_huge_headers_cost_bounded_memory() {
    // A 16 KiB limit: what tether holds per connection is then far below what Pingora alone
    // would buffer (up to 1 MiB), whatever the allocator's rounding.
    let (t, up, _) = start(
        "limits:\n  max_request_header_bytes: 16384\n  request_header_timeout_seconds: 60\n",
        false,
    );
    // Warm up what every connection costs anyway (tasks, sessions, allocator arenas) with 40
    // served kept-alive connections, so the growth measured is the unfinished headers' own.
    let warm: Vec<TcpStream> = (0..40)
        .map(|_| served_once(t.addr(), "shop.example"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(t.pid());
    // 40 clients each send ~1 MB of a header that never ends, and keep the connection open.
    let pad = vec![b'p'; 1_000_000];
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let (addr, pad) = (t.addr(), pad.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Pad: ");
                let _ = s.write_all(&pad);
                s
            })
        })
        .collect();
    let held: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    // Until tether has read what it is going to read: RSS unchanged for 2 s (at most 20 s).
    let (mut peak, mut steady_since, started) = (0, Instant::now(), Instant::now());
    while steady_since.elapsed() < Duration::from_secs(2)
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(250));
        let now = rss_kib(t.pid());
        if now > peak + 256 {
            (peak, steady_since) = (now, Instant::now());
        }
    }
    let grown = peak.max(rss_kib(t.pid())).saturating_sub(before);
    drop(held);
    drop(warm);
    eprintln!("RSS grew by {grown} KiB for 40 unfinished ~1 MB headers");
    assert!(
        grown < 20 * 1024,
        "RSS grew by {grown} KiB for 40 unfinished headers"
    );
    assert_eq!(
        up.request_count(),
        40,
        "only the warm-up requests are forwarded"
    );
    assert!(served(&t));
}

#[test]
fn connection_limits_apply_after_a_reload_without_upgrade() {
    let (t, _up, _) = start("limits:\n  request_header_timeout_seconds: 30\n", false);
    let yaml = std::fs::read_to_string(&t.config).unwrap().replace(
        "request_header_timeout_seconds: 30",
        "request_header_timeout_seconds: 1\n  max_connections: 3",
    );
    std::fs::write(&t.config, yaml).unwrap();
    crate::common::ops::signal(t.pid(), "HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        t.log().contains("reloaded")
    });
    assert!(!t.log().contains("needs a graceful upgrade"), "{}", t.log());
    // A connection accepted now runs under the new header timeout.
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n")
        .unwrap();
    let closed = closed_within(&mut s, Duration::from_secs(8));
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(5)),
        "cut after {closed:?}, the reloaded timeout is 1 s"
    );
    // And under the new connection limit (the cut one frees its slot once closed here too).
    drop(s);
    let mut held: Vec<TcpStream> = Vec::new();
    wait_for(
        "three served connections held",
        Duration::from_secs(10),
        || {
            let mut c = TcpStream::connect(t.addr()).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n");
            if read_response(&mut c) == Some(200) {
                held.push(c);
            }
            held.len() == 3
        },
    );
    let mut fourth = TcpStream::connect(t.addr()).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2)).is_some(),
        "a fourth connection is refused under max_connections: 3"
    );
    drop(held);
}

//! SPEC §3.7: malformed, ambiguous, oversized and slow requests are refused and never forwarded.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

fn start(limits: &str) -> (Tether, Upstream) {
    let up = Upstream::start("a");
    let body = format!(
        "{limits}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(&[&up])
    );
    (Tether::start(&body), up)
}

fn req(head: &str) -> Vec<u8> {
    format!("{head}\r\n\r\n").into_bytes()
}

#[test]
fn oversized_header_block_is_431_and_not_forwarded() {
    let (t, up) = start("");
    let cookie = "c".repeat(70_000);
    let status = raw_status(
        t.addr(),
        &req(&format!(
            "GET / HTTP/1.1\r\nHost: shop.example\r\nCookie: big={cookie}"
        )),
    );
    assert_eq!(status, Some(431));
    let status = raw_status(
        t.addr(),
        &req(&format!(
            "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Pad: {}",
            "p".repeat(66_000)
        )),
    );
    assert_eq!(status, Some(431));
    assert_eq!(up.request_count(), 0);
    assert_eq!(
        raw_status(t.addr(), &req("GET / HTTP/1.1\r\nHost: shop.example")),
        Some(200),
        "still serving"
    );
}

#[test]
fn header_limit_follows_the_config() {
    let (t, up) = start("limits:\n  max_request_header_bytes: 2048\n");
    let status = raw_status(
        t.addr(),
        &req(&format!(
            "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Pad: {}",
            "p".repeat(3000)
        )),
    );
    assert_eq!(status, Some(431));
    assert_eq!(up.request_count(), 0);
}

#[test]
fn hundreds_of_cookies_pass_through_intact() {
    let (t, up) = start("");
    let cookies: Vec<String> = (0..300).map(|i| format!("c{i}=v{i}")).collect();
    let cookie = cookies.join("; ");
    let status = raw_status(
        t.addr(),
        &req(&format!(
            "GET / HTTP/1.1\r\nHost: shop.example\r\nCookie: __cflb=junk; {cookie}"
        )),
    );
    assert_eq!(status, Some(200));
    let seen = up.requests();
    assert_eq!(seen[0].headers["cookie"].to_str().unwrap(), cookie);
}

#[test]
fn control_characters_in_header_values_are_400_and_not_forwarded() {
    let (t, up) = start("");
    for bad in [
        &b"X-A: a\x00b"[..],
        b"X-A: a\rb",
        b"X-A: a\x0bb\r\nX-B:\x00",
    ] {
        let mut r = b"GET / HTTP/1.1\r\nHost: shop.example\r\n".to_vec();
        r.extend_from_slice(bad);
        r.extend_from_slice(b"\r\n\r\n");
        let status = raw_status(t.addr(), &r);
        assert!(
            status.is_none() || status == Some(400),
            "{:?}: {status:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(up.request_count(), 0);
}

#[test]
fn request_smuggling_shapes_are_400_and_not_forwarded() {
    let (t, up) = start("");
    let shapes = [
        "POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: -5\r\n\r\n",
    ];
    for shape in shapes {
        let status = raw_status(t.addr(), shape.as_bytes());
        assert!(
            status == Some(400) || status.is_none(),
            "{shape:?}: {status:?}"
        );
    }
    assert_eq!(
        up.request_count(),
        0,
        "nothing ambiguous reaches the upstream"
    );
}

#[test]
fn obs_fold_and_bad_request_lines_are_400() {
    let (t, up) = start("");
    for bad in [
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-A: one\r\n  folded",
        "GARBAGE\r\nHost: shop.example",
        "GET / HTTP/9.9\r\nHost: shop.example",
    ] {
        let status = raw_status(t.addr(), &req(bad));
        assert!(
            status == Some(400) || status.is_none(),
            "{bad:?}: {status:?}"
        );
    }
    assert_eq!(up.request_count(), 0);
    // A control byte in the target: refused, or percent-encoded by Pingora's parser so that the
    // upstream only ever sees a well-formed target.
    match raw_status(t.addr(), &req("GET /a\x01b HTTP/1.1\r\nHost: shop.example")) {
        Some(400) | None => assert_eq!(up.request_count(), 0),
        Some(200) => assert_eq!(up.requests()[0].path, "/a%01b"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn absolute_form_targets_are_never_fetched_from_the_host_they_name() {
    let (t, up) = start("");
    // Another host: refused outright or routed as that Host (no balancer: 404); never fetched.
    let status = raw_status(
        t.addr(),
        &req("GET http://127.0.0.1:9/steal HTTP/1.1\r\nHost: shop.example"),
    );
    assert!(matches!(status, Some(400) | Some(404)), "{status:?}");
    let status = raw_status(
        t.addr(),
        &req("GET http://evil.example/ HTTP/1.1\r\nHost: evil.example"),
    );
    assert!(matches!(status, Some(400) | Some(404)), "{status:?}");
    assert_eq!(up.request_count(), 0);
}

#[test]
fn unknown_host_is_404() {
    let (t, up) = start("");
    assert_eq!(
        raw_status(t.addr(), &req("GET / HTTP/1.1\r\nHost: other.example")),
        Some(404)
    );
    assert_eq!(
        raw_status(t.addr(), &req("GET / HTTP/1.0")),
        Some(404),
        "no Host, no wildcard"
    );
    assert_eq!(up.request_count(), 0);
}

#[test]
fn slow_header_is_cut_off_at_the_header_timeout() {
    let (t, up) = start("limits:\n  request_header_timeout_seconds: 1\n");
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n")
        .unwrap();
    // Drip a header byte every 200 ms: each read is quick, the whole header never completes.
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                // SPEC 3.7 allows a 408 before the close.
                assert!(b[..n].starts_with(b"HTTP/1.1 408"), "{:?}", &b[..n]);
                closed = true;
                break;
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert!(closed, "a slow header must end the connection");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    assert_eq!(up.request_count(), 0);
    assert_eq!(
        raw_status(t.addr(), &req("GET / HTTP/1.1\r\nHost: shop.example")),
        Some(200),
        "still serving"
    );
}

#[test]
fn kept_alive_connection_serves_several_requests_within_the_deadline() {
    let (t, up) = start("limits:\n  request_header_timeout_seconds: 1\n");
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
            .unwrap();
        assert_eq!(read_status(&mut s), Some(200));
        // Idle longer than the header timeout between requests: idle is not a slow header.
        std::thread::sleep(Duration::from_millis(1300));
    }
    assert_eq!(up.request_count(), 3);
}

#[test]
fn connections_over_max_connections_are_closed() {
    let (t, _up) = start("limits:\n  max_connections: 2\n  request_header_timeout_seconds: 5\n");
    // Two kept-alive connections that have each been served once are certainly counted.
    let hold: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(t.addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
                .unwrap();
            assert_eq!(read_status(&mut s), Some(200));
            s
        })
        .collect();
    assert_eq!(
        raw_status(t.addr(), &req("GET / HTTP/1.1\r\nHost: shop.example")),
        None,
        "a third is closed"
    );
    assert!(
        t.log().contains("limits.max_connections is 2"),
        "{}",
        t.log()
    );
    drop(hold);
    wait_for(
        "a free slot after the held connections close",
        Duration::from_secs(5),
        || raw_status(t.addr(), &req("GET / HTTP/1.1\r\nHost: shop.example")) == Some(200),
    );
}

#[test]
fn refusals_and_header_sessions_are_counted_in_metrics() {
    let up = Upstream::start("a");
    let admin_port = free_port();
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\npools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n    session_affinity: header\n    session_affinity_attributes: {{ headers: [x-user] }}\n",
        endpoints(&[&up])
    );
    let t = Tether::start(&body);
    let big = req(&format!(
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Pad: {}",
        "p".repeat(70_000)
    ));
    assert_eq!(raw_status(t.addr(), &big), Some(431));
    let smuggle = b"POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(t.addr(), smuggle), Some(400));
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            raw_status(
                t.addr(),
                &req(&format!(
                    "GET / HTTP/1.1\r\nHost: shop.example\r\nX-User: {user}"
                ))
            ),
            Some(200)
        );
    }
    let metrics = crate::common::ops::admin(admin_port, "GET", "/metrics", None).body;
    for line in [
        "tether_refused_requests_total{reason=\"header_too_large\"} 1",
        "tether_refused_requests_total{reason=\"content_length_with_transfer_encoding\"} 1",
        "tether_header_sessions{balancer=\"shop.example\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
}

#[test]
fn max_connections_counts_each_listener_apart() {
    let up = Upstream::start("a");
    let dir = tempfile::tempdir().unwrap();
    let (port, port2) = (free_port(), free_port());
    let first = format!("  - address: 127.0.0.1:{port}\n");
    let head =
        head(dir.path(), port).replace(&first, &format!("{first}  - address: 127.0.0.1:{port2}\n"));
    let yaml = format!(
        "{head}limits:\n  max_connections: 1\npools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n",
        endpoints(&[&up])
    );
    let t = Tether::start_with(dir, port, &yaml);
    let second: std::net::SocketAddr = format!("127.0.0.1:{port2}").parse().unwrap();
    let request = req("GET / HTTP/1.1\r\nHost: shop.example");
    // The harness's start-up probe (and any probe here) holds the one slot of its listener
    // until tether has seen it close: wait until each listener serves a whole request, then
    // take the first listener's slot with a connection that is served and stays open.
    for addr in [t.addr(), second] {
        wait_for("the listener to serve", LONG, || {
            status_of(addr, &request) == Some(200)
        });
    }
    let mut held = None;
    wait_for("a connection to hold on the first listener", LONG, || {
        let Ok(mut s) = TcpStream::connect(t.addr()) else {
            return false;
        };
        s.set_read_timeout(Some(LONG)).unwrap();
        let served = s.write_all(&request).is_ok() && read_status(&mut s) == Some(200);
        held = served.then_some(s);
        served
    });
    let refused_before = count_refused(&t);
    assert_eq!(
        raw_status(t.addr(), &request),
        None,
        "the first listener is full:\n{}",
        t.log()
    );
    wait_for("the refusal to be logged", LONG, || {
        count_refused(&t) > refused_before
    });
    assert_eq!(
        status_of(second, &request),
        Some(200),
        "the second has its own count:\n{}",
        t.log()
    );
    assert_eq!(
        raw_status(t.addr(), &request),
        None,
        "the first is still full while its connection is held"
    );
    drop(held);
}

/// The status of one request on a fresh connection to `addr`; `None` if the connection is
/// refused or closed unanswered. Waits up to [`LONG`]: a loaded machine is slow, not wrong.
fn status_of(addr: std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(request).ok()?;
    read_status(&mut s)
}

/// How many connections tether has logged as refused for `max_connections`.
fn count_refused(t: &Tether) -> usize {
    t.log().matches("limits.max_connections is 1").count()
}

#[test]
fn bare_cr_in_request_target_is_refused() {
    let up = Upstream::start("a");
    let admin_port = free_port();
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\npools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n",
        endpoints(&[&up])
    );
    let t = Tether::start(&body);
    // Pingora would forward this as `/a%0Dx`; SPEC §3.7 says a bad request line is 400.
    for bare in [
        &b"GET /a\rx HTTP/1.1\r\nHost: shop.example\r\n\r\n"[..],
        b"GET /b\r HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    ] {
        assert_eq!(raw_status(t.addr(), bare), Some(400));
    }
    // A kept-alive connection: a clean request, then one with a bare CR, refused on its own.
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut s), Some(200));
    s.write_all(b"GET /c\rx HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut s), Some(400));
    // The escaped form a client may send on purpose is served as before.
    let escaped = b"GET /d%0Dx HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    assert_eq!(raw_status(t.addr(), escaped), Some(200));

    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/ok", "/d%0Dx"], "nothing refused was forwarded");
    wait_for("the admin listener", LONG, || {
        TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let metrics = crate::common::ops::admin(admin_port, "GET", "/metrics", None).body;
    let line = "tether_refused_requests_total{reason=\"bad_target\"} 3";
    assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
}

/// tether on `shop.example` with an admin listener; `limits` goes first. Returns the admin port.
fn start_with_admin(limits: &str) -> (Tether, Upstream, u16) {
    let up = Upstream::start("a");
    let admin_port = free_port();
    let body = format!(
        "{limits}admin:\n  address: 127.0.0.1:{admin_port}\npools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n",
        endpoints(&[&up])
    );
    let t = Tether::start(&body);
    wait_for("the admin listener", LONG, || {
        TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    (t, up, admin_port)
}

/// The messages (after `] `) of tether's refusal log lines so far.
fn refusal_lines(t: &Tether) -> Vec<String> {
    t.log()
        .lines()
        .filter(|l| l.contains(" refused] "))
        .map(|l| l.split_once("] ").unwrap().1.to_string())
        .collect()
}

/// Requests Pingora's own HTTP/1 parser refuses before any tether hook runs.
const PARSER_REFUSED: [&[u8]; 3] = [
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-A: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : shop.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-A: one\r\n  folded\r\n\r\n",
];

#[test]
fn parser_refusal_is_counted_and_logged() {
    let (t, up, admin_port) = start_with_admin("");
    for bad in PARSER_REFUSED {
        assert_eq!(
            raw_status(t.addr(), bad),
            Some(400),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let connect = b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n";
    assert_eq!(raw_status(t.addr(), connect), Some(405));
    // A kept-alive connection: a served request, then one the parser refuses.
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(&req("GET /ok HTTP/1.1\r\nHost: shop.example"))
        .unwrap();
    assert_eq!(read_status(&mut s), Some(200));
    s.write_all(PARSER_REFUSED[0]).unwrap();
    assert_eq!(read_status(&mut s), Some(400));

    wait_for("a line for each refusal", LONG, || {
        refusal_lines(&t).len() >= 5
    });
    let lines = refusal_lines(&t);
    assert_eq!(lines.len(), 5, "one line each:\n{}", t.log());
    let parser = lines
        .iter()
        .filter(|l| l.starts_with("400 from 127.0.0.1:") && l.contains("HTTP/1 parser"))
        .count();
    assert_eq!(parser, 4, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("405 from 127.0.0.1:")),
        "{lines:?}"
    );
    let metrics = crate::common::ops::admin(admin_port, "GET", "/metrics", None).body;
    for line in [
        "tether_refused_requests_total{reason=\"malformed\"} 4",
        "tether_refused_requests_total{reason=\"connect_method\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    assert_eq!(
        up.request_count(),
        1,
        "only the served request was forwarded"
    );
}

#[test]
fn three_hundred_refusals_in_a_second_write_under_30_lines() {
    let (t, up, admin_port) = start_with_admin("limits:\n  max_request_header_bytes: 1024\n");
    let too_large = req(&format!(
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Pad: {}",
        "p".repeat(2000)
    ));
    let before = t.log().lines().count();
    for i in 0..300 {
        let (request, status) = match i % 4 {
            3 => (&too_large[..], 431),
            k => (PARSER_REFUSED[k], 400),
        };
        assert_eq!(raw_status(t.addr(), request), Some(status), "request {i}");
    }
    // Every refusal is either logged or summed in a "N more refusals" line, which the log
    // flush timer writes soon after its second ends.
    let accounted = || {
        refusal_lines(&t)
            .iter()
            .map(|l| match l.split_once(" more refusal") {
                Some((n, _)) => n.parse::<usize>().unwrap(),
                None => 1,
            })
            .sum::<usize>()
    };
    wait_for("every refusal to be logged or counted", LONG, || {
        accounted() == 300
    });
    let log = t.log();
    let written = log.lines().count() - before;
    assert!(written < 30, "{written} lines for 300 refusals:\n{log}");
    let metrics = crate::common::ops::admin(admin_port, "GET", "/metrics", None).body;
    for line in [
        "tether_refused_requests_total{reason=\"malformed\"} 225",
        "tether_refused_requests_total{reason=\"header_too_large\"} 75",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    assert_eq!(up.request_count(), 0);
}

#[test]
fn refusal_writes_one_line_not_two() {
    let (t, up, admin_port) = start_with_admin(
        "limits:\n  max_request_header_bytes: 1024\n  request_header_timeout_seconds: 1\n",
    );
    // Refused in tether's hooks (Pingora would log its own error about each) ...
    let smuggle = b"POST / HTTP/1.1\r\nHost: shop\xff.example\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(t.addr(), smuggle), Some(400));
    let bare_cr = b"GET /a\rx HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    assert_eq!(raw_status(t.addr(), bare_cr), Some(400));
    // ... and cut by the stream while the header is read (Pingora logs the failed read).
    let too_large = req(&format!(
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Pad: {}",
        "p".repeat(2000)
    ));
    assert_eq!(raw_status(t.addr(), &too_large), Some(431));
    let mut slow = TcpStream::connect(t.addr()).unwrap();
    slow.set_read_timeout(Some(LONG)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n")
        .unwrap();
    assert_eq!(read_status(&mut slow), Some(408));

    wait_for("a line for each refusal", LONG, || {
        refusal_lines(&t).len() >= 4
    });
    // Give a second line, if any, the time to arrive: Pingora logs after tether does.
    assert_eq!(
        raw_status(t.addr(), &req("GET / HTTP/1.1\r\nHost: shop.example")),
        Some(200)
    );
    let log = t.log();
    assert_eq!(refusal_lines(&t).len(), 4, "{log}");
    // Each refused request that reached a hook also has its access-log line (SPEC §1); no
    // other warning or error may speak of a refusal (start-up chatter at info may still arrive:
    // the listener is bound, and served, before Pingora's last service reports in).
    let others: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains(" refused] "))
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !l.contains(" refused] "))
        .collect();
    assert!(others.is_empty(), "lines besides the refusals: {others:#?}");
    assert!(!log.contains("Fail to"), "{log}");
    let metrics = crate::common::ops::admin(admin_port, "GET", "/metrics", None).body;
    assert!(
        !metrics.contains("reason=\"malformed\""),
        "tether's own 400s are not parser refusals:\n{metrics}"
    );
    assert_eq!(up.request_count(), 1);
}

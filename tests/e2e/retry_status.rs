//! SPEC §3.9 retrying on a response, end to end: real upstreams that answer 503 (a restarting app
//! server whose monitor is still green) behind a real tether with `retry_on_status`.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::ops::admin;
use crate::common::*;

/// Three upstreams a, b, c in one pool behind `"*"` with cookie affinity, the failover `mode`
/// and `retry` as the balancer's `retry_on_status` ("" leaves it out).
fn start(mode: &str, retry: &str) -> (Tether, [Upstream; 3]) {
    let retry = match retry {
        "" => String::new(),
        list => format!("    retry_on_status: {list}\n"),
    };
    start_three(&format!(
        "    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ zero_downtime_failover: {mode} }}\n{retry}"
    ))
}

/// Sends `method` to `t` with `cookie` and `body`.
fn send(t: &Tether, method: &str, path: &str, cookie: &str, body: Vec<u8>) -> Resp {
    let resp = client()
        .request(method.parse().unwrap(), t.url(path))
        .header("cookie", cookie)
        .body(body)
        .send()
        .unwrap();
    Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().unwrap(),
    }
}

/// Requests for `/x` an upstream saw (finding a session pinned to `a` sends `/` to every one).
fn tried(u: &Upstream) -> usize {
    u.requests().iter().filter(|s| s.path == "/x").count()
}

fn requests_with(u: &Upstream, method: &str) -> usize {
    u.requests().iter().filter(|s| s.method == method).count()
}

#[test]
fn temporary_retry_serves_from_another_endpoint_keeps_the_cookie_and_goes_home() {
    let (t, [a, b, c]) = start("temporary", "[502, 503, 504]");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(503);
    for _ in 0..3 {
        let r = send(&t, "GET", "/x", &cookie, Vec::new());
        assert_eq!(r.status, 200, "{r:?}");
        assert!(["b", "c"].contains(&r.endpoint()), "{r:?}");
        assert!(
            r.set_cookies().is_empty(),
            "temporary leaves the cookie alone"
        );
    }
    assert_eq!(tried(&a), 3, "every request went home first");
    assert_eq!(tried(&b) + tried(&c), 3, "one retry each");
    assert!(t.log().contains("web/a answered 503: retry on web/"));

    a.set_status(0);
    let r = send(&t, "GET", "/x", &cookie, Vec::new());
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "a"),
        "back home once a answers"
    );
}

#[test]
fn sticky_retry_repins_to_the_endpoint_that_answered() {
    let (t, [a, _b, _c]) = start("sticky", "[503]");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(503);
    let r = send(&t, "GET", "/", &cookie, Vec::new());
    assert_eq!(r.status, 200, "{r:?}");
    let answered = r.endpoint().to_string();
    assert!(["b", "c"].contains(&answered.as_str()), "{r:?}");
    let repinned = format!(
        "__cflb={}",
        r.cflb().expect("sticky re-pins with Set-Cookie")
    );

    a.set_status(0);
    for _ in 0..3 {
        let r = send(&t, "GET", "/", &repinned, Vec::new());
        assert_eq!(
            r.endpoint(),
            answered,
            "the session stays where it was re-pinned"
        );
    }
}

#[test]
fn post_is_never_retried() {
    let (t, [a, b, c]) = start("temporary", "[503]");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(503);
    let r = send(&t, "POST", "/order", &cookie, b"item=1".to_vec());
    assert_eq!((r.status, r.endpoint()), (503, "a"), "{r:?}");
    assert_eq!(
        requests_with(&a, "POST"),
        1,
        "the upstream saw exactly one POST"
    );
    assert_eq!(requests_with(&b, "POST") + requests_with(&c, "POST"), 0);
}

#[test]
fn put_with_a_small_body_is_retried_with_its_whole_body() {
    let (t, [a, b, c]) = start("temporary", "[503]");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(503);
    let r = send(&t, "PUT", "/echo", &cookie, vec![b'p'; 10_000]);
    assert_eq!((r.status, r.body.as_str()), (200, "got 10000"), "{r:?}");
    assert_eq!(requests_with(&a, "PUT"), 1);
    assert_eq!(requests_with(&b, "PUT") + requests_with(&c, "PUT"), 1);
}

#[test]
fn put_with_a_body_over_64_kib_is_not_retried() {
    let (t, [a, b, c]) = start("temporary", "[503]");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(503);
    let r = send(&t, "PUT", "/echo", &cookie, vec![b'p'; 100 * 1024]);
    assert_eq!(
        r.status, 503,
        "tether no longer holds the whole body: {r:?}"
    );
    assert_eq!(requests_with(&a, "PUT"), 1);
    assert_eq!(requests_with(&b, "PUT") + requests_with(&c, "PUT"), 0);
}

#[test]
fn without_retry_on_status_an_answer_is_never_retried() {
    let (t, [a, b, c]) = start("temporary", "");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(503);
    let r = send(&t, "GET", "/x", &cookie, Vec::new());
    assert_eq!((r.status, r.endpoint()), (503, "a"), "{r:?}");
    assert_eq!((tried(&a), tried(&b) + tried(&c)), (1, 0));
}

#[test]
fn a_status_not_listed_is_not_retried() {
    let (t, [a, b, c]) = start("temporary", "[503]");
    let cookie = cookie_pinned_to(&t, "a");
    a.set_status(500);
    let r = send(&t, "GET", "/x", &cookie, Vec::new());
    assert_eq!((r.status, r.endpoint()), (500, "a"), "{r:?}");
    assert_eq!(tried(&b) + tried(&c), 0);
}

#[test]
fn a_failed_retry_gives_the_client_the_retry_answer() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    a.set_status(503);
    b.set_status(502);
    let t = Tether::start(&one_pool(&[&a, &b], "    retry_on_status: [502, 503]\n"));
    let r = get(&client(), &t.url("/x"), None, &[]);
    let want = match r.endpoint() {
        "a" => 503,
        "b" => 502,
        other => panic!("answered by {other:?}, not by the endpoint of the retry: {r:?}"),
    };
    assert_eq!(
        r.status, want,
        "the retry's own answer, not a 502 of tether's"
    );
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 1),
        "one retry, no more"
    );
}

#[test]
fn retries_are_counted_by_reason_and_shown_in_status() {
    let admin_port = free_port();
    let ups = three_upstreams();
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n{}",
        one_pool(
            &ups.each_ref(),
            "    session_affinity: cookie\n    retry_on_status: [503]\n"
        )
    ));
    let cookie = cookie_pinned_to(&t, "a");
    ups[0].set_status(503);
    for _ in 0..2 {
        assert_eq!(send(&t, "GET", "/", &cookie, Vec::new()).status, 200);
    }
    let metrics = admin(admin_port, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("tether_retries_total{balancer=\"*\",reason=\"status_503\"} 2"),
        "{metrics}"
    );
    let status = admin(admin_port, "GET", "/status", None).json();
    let lb = &status["load_balancers"][0];
    assert_eq!(lb["retries"], 2, "{lb}");
    assert_eq!(lb["retry_on_status"], serde_json::json!([503]), "{lb}");
    let page = admin(admin_port, "GET", "/", None).body;
    assert!(
        page.contains("2 <span class=muted>on 503</span>"),
        "the page shows the count"
    );
}

/// A hand-written upstream for answers the hyper upstream cannot give (an interim 103, a body
/// cut in the middle): it reads each request head, counts it and runs `script` on the stream.
struct Scripted {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    fn start(script: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (requests, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (count, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(SeqCst) {
                    return;
                }
                let Ok(mut s) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                count.fetch_add(1, SeqCst);
                script(&mut s);
            }
        });
        Scripted {
            addr,
            requests,
            stop,
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// tether with `retry_on_status: [502, 503, 504]` over two pools tried in order: `s` first,
/// then pool `spare` with upstream `b`, where a retry goes (`failover_across_pools`).
fn start_s_then_b(s: &Scripted, b: &Upstream) -> Tether {
    Tether::start(&format!(
        "pools:\n  - id: first\n    endpoints:\n      - {{ name: s, address: \"{}\" }}\n\
         \x20 - id: spare\n    endpoints:\n      - {{ name: b, address: \"{}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [first, spare]\n\
         \x20   adaptive_routing: {{ failover_across_pools: true }}\n\
         \x20   retry_on_status: [502, 503, 504]\n",
        s.addr, b.addr
    ))
}

/// Reads from `s` until `what` has arrived (or panics after 10 s); returns everything read.
fn read_until(s: &mut TcpStream, what: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(what.len()).any(|w| w == what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in {:?}",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before {what:?}: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("{e} before {what:?}: {:?}", String::from_utf8_lossy(&got)),
        }
    }
    got
}

#[test]
fn a_streaming_response_is_never_retried_once_bytes_were_sent() {
    let cut = Arc::new(AtomicBool::new(false));
    let cut_now = cut.clone();
    let s = Scripted::start(move |s| {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-endpoint: s\r\n\r\n";
        let _ = s.write_all(format!("{head}5\r\nfirst\r\n").as_bytes());
        // Cut the body (no last chunk) once the client has the first bytes.
        wait_until(&cut_now);
    });
    let b = Upstream::start("b");
    let t = start_s_then_b(&s, &b);
    let mut client = TcpStream::connect(t.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = read_until(&mut client, b"first");
    cut.store(true, SeqCst);
    let _ = client.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "one response, never a second: {text}"
    );
    assert!(
        !text.contains("\r\n0\r\n\r\n"),
        "the cut body is not completed: {text}"
    );
    assert_eq!(b.request_count(), 0, "nothing retried on b");
    assert_eq!(s.requests.load(SeqCst), 1);
}

#[test]
fn an_interim_response_already_sent_prevents_a_retry() {
    let seen = Arc::new(AtomicBool::new(false));
    let client_saw = seen.clone();
    let s = Scripted::start(move |s| {
        let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n");
        // The final answer only once the 103 has reached the client: a byte of the response
        // is out, so its 503 must not be retried.
        wait_until(&client_saw);
        let _ = s.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 1\r\nx-endpoint: s\r\n\
              connection: close\r\n\r\ns",
        );
    });
    let b = Upstream::start("b");
    let t = start_s_then_b(&s, &b);
    let mut client = TcpStream::connect(t.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = read_until(&mut client, b"103 Early Hints");
    seen.store(true, SeqCst);
    got.extend(read_until(&mut client, b"\r\n\r\ns"));
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("HTTP/1.1 503"), "{text}");
    assert_eq!(
        b.request_count(),
        0,
        "bytes of the answer were sent: no retry"
    );
}

/// Waits (at most 10 s) until `flag` is set by the test.
fn wait_until(flag: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

//! SPEC §3.7, "Holding is denial too": what one client withholds — the rest of a request body,
//! the reading of a response, HTTP/2 streams beyond the limit — is bounded in time and count, and
//! the upstream connection such a request held is released with it.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::h2raw::*;
use crate::common::hostile::read_response;
use crate::common::ops::{admin, self_signed};
use crate::common::*;

const HOST: &str = "shop.example";

/// Tether with `limits` on a plain listener, a TLS one (port returned) and an admin listener
/// (port returned), in front of one upstream.
fn start(limits: &str) -> (Tether, Upstream, u16, u16) {
    let up = Upstream::start("a");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls_port = free_port();
    let admin_port = free_port();
    let (cert, key) = self_signed(dir.path());
    let head = head_with_tls(dir.path(), port, tls_port, &cert, &key);
    let yaml = format!(
        "{head}admin:\n  address: 127.0.0.1:{admin_port}\n{limits}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: {HOST}\n    default_pools: [web]\n",
        endpoints(&[&up])
    );
    let t = Tether::start_with(dir, port, &yaml);
    wait_for("the TLS listener", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    (t, up, tls_port, admin_port)
}

/// `tether_refused_requests_total{reason}` as the admin API reports it now.
fn refused(admin_port: u16, reason: &str) -> u64 {
    let metrics = admin(admin_port, "GET", "/metrics", None).body;
    let line = format!("tether_refused_requests_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn stalled_h2_bodies_are_reset_and_their_upstreams_closed() {
    let (_t, up, tls_port, admin_port) = start("limits:\n  request_body_timeout_seconds: 2\n");
    let mut h2 = H2::connect(tls_port);
    let streams: Vec<u32> = (0..10).map(|i| 1 + 2 * i).collect();
    for &id in &streams {
        h2.request(id, "POST", "/echo", HOST, false);
    }
    let opened = Instant::now();
    wait_for(
        "ten upstream connections held",
        Duration::from_secs(5),
        || up.open_connections() == 10,
    );
    wait_for(
        "the upstream connections released",
        Duration::from_secs(4),
        || up.open_connections() == 0,
    );
    let released = opened.elapsed();
    assert!(
        (Duration::from_millis(1500)..=Duration::from_secs(3)).contains(&released),
        "released after {released:?}: the body timeout is 2 s, and release is due within 1 s of it"
    );
    for &id in &streams {
        let reset = h2.wait_frame(Duration::from_secs(2), |f| {
            f.kind == RST_STREAM && f.stream == id
        });
        assert!(reset.is_some(), "stream {id} was not reset: {:?}", h2.seen);
    }
    assert_eq!(refused(admin_port, "body_timeout"), 10);
    // The connection itself still serves.
    h2.request(21, "GET", "/", HOST, true);
    let answer = h2.wait_frame(Duration::from_secs(5), |f| {
        f.kind == HEADERS && f.stream == 21
    });
    assert!(answer.is_some(), "no answer on the same connection");
}

#[test]
fn h2_stream_beyond_max_concurrent_streams_is_refused() {
    let (_t, up, tls_port, _) = start("limits:\n  max_concurrent_streams: 3\n");
    let mut h2 = H2::connect(tls_port);
    let settings = h2
        .seen
        .iter()
        .find_map(|f| f.setting(MAX_CONCURRENT_STREAMS));
    assert_eq!(settings, Some(3), "advertised in SETTINGS");
    for id in [1, 3, 5, 7] {
        h2.request(id, "POST", "/echo", HOST, false);
    }
    let refused = h2.wait_frame(Duration::from_secs(5), |f| {
        f.kind == RST_STREAM && f.stream == 7
    });
    assert_eq!(
        refused.and_then(|f| f.error_code()),
        Some(REFUSED_STREAM),
        "{:?}",
        h2.seen
    );
    // The upstream counts a connection when it accepts it and a request once it has read its
    // head, a moment later: wait for both.
    wait_for(
        "three upstream connections and requests",
        Duration::from_secs(5),
        || up.open_connections() == 3 && up.request_count() >= 3,
    );
    assert_eq!(
        up.request_count(),
        3,
        "the refused stream was not forwarded"
    );
}

#[test]
fn stalled_http1_body_gets_408_and_its_upstream_closed() {
    let (t, up, _, admin_port) = start("limits:\n  request_body_timeout_seconds: 1\n");
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sent = Instant::now();
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\nab").as_bytes(),
    )
    .unwrap();
    wait_for("the upstream connection", Duration::from_secs(5), || {
        up.open_connections() == 1
    });
    assert_eq!(read_response(&mut s), Some(408));
    let answered = sent.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&answered),
        "408 after {answered:?} for a 1 s body timeout"
    );
    wait_for(
        "the upstream connection closed",
        Duration::from_secs(2),
        || up.open_connections() == 0,
    );
    // A chunked body that stops after its first chunk is timed the same way.
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut s), Some(408));
    wait_for(
        "the upstream connection closed",
        Duration::from_secs(2),
        || up.open_connections() == 0,
    );
    assert_eq!(refused(admin_port, "body_timeout"), 2);
    // One refusal, one line: tether's, not Pingora's ERROR beside it.
    wait_for("the refusal lines", Duration::from_secs(2), || {
        t.log().matches("sent no request body bytes for 1s").count() == 2
    });
    assert!(!t.log().contains("Fail to proxy"), "{}", t.log());
}

#[test]
fn slow_but_steady_bodies_keep_working() {
    let (t, _up, tls_port, _) = start("limits:\n  request_body_timeout_seconds: 2\n");
    let addr = t.addr();
    // HTTP/1: five bytes, one a second, each within the 2 s timeout.
    let h1 = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\n").as_bytes(),
        )
        .unwrap();
        for b in b"hello" {
            std::thread::sleep(Duration::from_secs(1));
            s.write_all(&[*b]).unwrap();
        }
        let mut resp = vec![0u8; 4096];
        let n = s.read(&mut resp).unwrap();
        String::from_utf8_lossy(&resp[..n]).to_string()
    });
    // HTTP/2: the same on one stream.
    let mut h2 = H2::connect(tls_port);
    h2.request(1, "POST", "/echo", HOST, false);
    for (i, b) in b"hello".iter().enumerate() {
        std::thread::sleep(Duration::from_secs(1));
        h2.data(1, &[*b], i == 4);
    }
    let body = h2.wait_frame(Duration::from_secs(5), |f| f.kind == DATA && f.stream == 1);
    assert_eq!(
        body.map(|f| f.payload),
        Some(b"got 5".to_vec()),
        "{:?}",
        h2.seen
    );
    let h1 = h1.join().unwrap();
    assert!(
        h1.starts_with("HTTP/1.1 200") && h1.ends_with("got 5"),
        "{h1}"
    );
}

#[test]
fn slow_upstream_is_not_a_stalled_body() {
    let (t, _up, _, _) = start("limits:\n  request_body_timeout_seconds: 1\n");
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /slow/2500 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s), Some(200));
}

/// A client socket whose receive buffer is tiny, so a large response stalls at once.
fn tiny_window_client(addr: std::net::SocketAddr) -> TcpStream {
    upstream::runtime().block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    })
}

#[test]
fn client_that_never_reads_is_cut_after_send_timeout() {
    let (t, up, _, admin_port) = start("limits:\n  send_timeout_seconds: 2\n");
    let mut s = tiny_window_client(t.addr());
    s.set_nonblocking(false).unwrap();
    s.write_all(format!("GET /big/{} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", 32 << 20).as_bytes())
        .unwrap();
    wait_for("the upstream connection", Duration::from_secs(5), || {
        up.open_connections() == 1
    });
    let asked = Instant::now();
    wait_for(
        "the upstream connection released",
        Duration::from_secs(10),
        || up.open_connections() == 0,
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "released after {:?}, before the 2 s send timeout",
        asked.elapsed()
    );
    assert_eq!(refused(admin_port, "send_timeout"), 1);
    // The connection was cut: reading it now ends (after what the buffers held) instead of
    // delivering the 32 MiB.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total < 32 << 20, "the whole response arrived after the cut");
    drop(up);
}

#[test]
fn h2_stream_that_is_never_read_is_reset_after_send_timeout() {
    let (_t, up, tls_port, admin_port) = start("limits:\n  send_timeout_seconds: 2\n");
    let mut h2 = H2::connect(tls_port);
    // No WINDOW_UPDATE is ever sent: the stream's 64 KiB window fills and stays full.
    h2.request(1, "GET", &format!("/big/{}", 8 << 20), HOST, true);
    let asked = Instant::now();
    wait_for("the upstream connection", Duration::from_secs(5), || {
        up.connections() == 1
    });
    let reset = h2.wait_frame(Duration::from_secs(6), |f| {
        f.kind == RST_STREAM && f.stream == 1
    });
    assert!(
        reset.is_some(),
        "the stream was not reset: {:?}",
        h2.seen.len()
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "reset after {:?}, before the 2 s send timeout",
        asked.elapsed()
    );
    wait_for(
        "the upstream connection released",
        Duration::from_secs(2),
        || up.open_connections() == 0,
    );
    assert_eq!(refused(admin_port, "send_timeout"), 1);
}

#[test]
fn holding_limits_apply_after_a_reload_without_upgrade() {
    let (t, _up, tls_port, _) = start("limits:\n  request_body_timeout_seconds: 30\n");
    let yaml = std::fs::read_to_string(&t.config).unwrap().replace(
        "request_body_timeout_seconds: 30",
        "request_body_timeout_seconds: 1\n  max_concurrent_streams: 2",
    );
    std::fs::write(&t.config, yaml).unwrap();
    crate::common::ops::signal(t.pid(), "HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        t.log().contains("reloaded")
    });
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\nab").as_bytes(),
    )
    .unwrap();
    assert_eq!(
        read_response(&mut s),
        Some(408),
        "the reloaded 1 s body timeout"
    );
    let h2 = H2::connect(tls_port);
    let settings = h2
        .seen
        .iter()
        .find_map(|f| f.setting(MAX_CONCURRENT_STREAMS));
    assert_eq!(
        settings,
        Some(2),
        "a new connection gets the reloaded stream limit"
    );
}

//! Clients that misbehave on purpose (SPEC §3.7): keep-alive requests read to the end, silent or
//! half-sent headers, TLS clients that speak raw bytes (HTTP/2 preface included), and the
//! tether process's resident memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pingora::tls::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

/// The client's HTTP/2 connection preface followed by an empty SETTINGS frame.
pub const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads one whole response (head and `Content-Length` body) from a kept-alive connection and
/// returns its status; `None` if the connection closes or stalls first.
pub fn read_response(s: &mut impl Read) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    head.strip_prefix("http/1.1 ")?.get(..3)?.parse().ok()
}

/// A kept-alive connection to `addr` that has been served one `GET /` for `host`.
pub fn served_once(addr: SocketAddr, host: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut s),
        Some(200),
        "the first request is served"
    );
    s
}

/// Waits up to `within` for the server to close `s` (whatever it sends first, e.g. a 408, is
/// read and dropped); returns how long that took, or `None` if it is still open.
pub fn closed_within(s: &mut impl Read, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < within {
        match s.read(&mut chunk) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// A TLS connection to 127.0.0.1:`port` offering `alpn` (wire format), certificate unchecked.
pub fn tls_connect(port: u16, alpn: &[u8]) -> SslStream<TcpStream> {
    try_tls_connect(port, alpn, Duration::from_millis(200)).unwrap()
}

/// As [`tls_connect`], with reads timing out after `read_timeout`; `None` if it fails.
pub fn try_tls_connect(
    port: u16,
    alpn: &[u8],
    read_timeout: Duration,
) -> Option<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls()).ok()?;
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(alpn).ok()?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(read_timeout)).ok()?;
    b.build()
        .configure()
        .ok()?
        .verify_hostname(false)
        .connect("localhost", tcp)
        .ok()
}

/// The resident set size of process `pid` in KiB (`VmRSS` in /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

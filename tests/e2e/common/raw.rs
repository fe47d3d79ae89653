//! Raw-socket exchanges: requests no client library would send (raw UTF-8 or Latin-1 bytes,
//! repeated headers, forged fields), and the answer exactly as received.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response as received on the wire.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl RawResp {
    /// Every value of header `name` (case-insensitive), trimmed, lossily decoded.
    pub fn header(&self, name: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.head)
            .split("\r\n")
            .skip(1)
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }
}

/// Sends `request` (which should say `Connection: close`) on a fresh connection and reads the
/// answer to the end; panics when there is none within 10 s.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> RawResp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&buf)));
    let head = buf[..end].to_vec();
    let status = String::from_utf8_lossy(&head)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap();
    RawResp {
        status,
        head,
        body: buf[end + 4..].to_vec(),
    }
}

/// A GET request for `path` on `host` with extra raw header lines (each without CRLF).
pub fn get_raw(path: &[u8], host: &[u8], lines: &[&[u8]]) -> Vec<u8> {
    let mut r = b"GET ".to_vec();
    r.extend_from_slice(path);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    r.extend_from_slice(host);
    r.extend_from_slice(b"\r\n");
    for l in lines {
        r.extend_from_slice(l);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    r
}

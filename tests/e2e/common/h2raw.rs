//! A hand-driven HTTP/2 client over TLS: it writes exactly the frames a test asks for (a stream
//! with HEADERS and no DATA, one byte of body at a time, more streams than the server allows)
//! and reads back every frame the server sends, which no well-behaved client library allows.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use openssl::ssl::SslStream;

use super::hostile::tls_connect;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
/// RST_STREAM error code REFUSED_STREAM (RFC 9113 §7).
pub const REFUSED_STREAM: u32 = 0x7;
/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// One frame as read from the server.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM frame.
    pub fn error_code(&self) -> Option<u32> {
        (self.kind == RST_STREAM && self.payload.len() == 4)
            .then(|| u32::from_be_bytes(self.payload[..4].try_into().unwrap()))
    }

    /// A setting's value, if this is a SETTINGS frame that carries it.
    pub fn setting(&self, id: u16) -> Option<u32> {
        if self.kind != SETTINGS {
            return None;
        }
        self.payload.chunks_exact(6).find_map(|c| {
            (u16::from_be_bytes([c[0], c[1]]) == id)
                .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        })
    }
}

/// A HEADERS frame opening stream `id` with `method` `path` on authority `host` (https);
/// END_STREAM when `end`.
pub fn headers_frame(id: u32, method: &str, path: &str, host: &str, end: bool) -> Vec<u8> {
    let mut block = Vec::new();
    // HPACK: literal header fields without indexing, names from the static table.
    for (index, value) in [(2u8, method), (4, path), (1, host)] {
        block.push(index);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block.push(0x87); // :scheme https (static index 7)
    let len = u32::try_from(block.len()).unwrap().to_be_bytes();
    let flags = 0x4 | if end { 0x1 } else { 0 };
    let mut frame = vec![len[1], len[2], len[3], HEADERS, flags];
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&block);
    frame
}

/// An HTTP/2 connection (TLS, ALPN h2) past its preface and first SETTINGS exchange.
pub struct H2 {
    s: SslStream<TcpStream>,
    buf: Vec<u8>,
    /// Every frame read so far.
    pub seen: Vec<Frame>,
}

impl H2 {
    /// Connects to 127.0.0.1:`port`, sends the preface and empty SETTINGS, and acknowledges the
    /// server's SETTINGS once they arrive.
    pub fn connect(port: u16) -> H2 {
        let mut s = tls_connect(port, b"\x02h2");
        assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
        s.write_all(super::hostile::H2_PREFACE_AND_SETTINGS)
            .unwrap();
        let mut h2 = H2 {
            s,
            buf: Vec::new(),
            seen: Vec::new(),
        };
        let settings = h2
            .wait_frame(Duration::from_secs(5), |f| {
                f.kind == SETTINGS && f.flags & 1 == 0
            })
            .expect("the server's SETTINGS");
        drop(settings);
        h2.send(SETTINGS, 1, 0, &[]);
        h2
    }

    /// Writes one frame.
    pub fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.s.write_all(&frame).unwrap();
    }

    /// Opens stream `id` with `method` `path` on authority `host`; END_STREAM when `end`.
    pub fn request(&mut self, id: u32, method: &str, path: &str, host: &str, end: bool) {
        self.s
            .write_all(&headers_frame(id, method, path, host, end))
            .unwrap();
    }

    /// Sends body bytes on stream `id`; END_STREAM when `end`.
    pub fn data(&mut self, id: u32, bytes: &[u8], end: bool) {
        self.send(DATA, u8::from(end), id, bytes);
    }

    /// Reads frames until one matches `want` (returned) or `within` passes (`None`); every frame
    /// read is also kept in `seen`. A closed connection ends the wait.
    pub fn wait_frame(&mut self, within: Duration, want: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + within;
        if let Some(f) = self.seen.iter().find(|f| want(f)) {
            return Some(f.clone());
        }
        while Instant::now() < deadline {
            while let Some(f) = self.parse_one() {
                self.seen.push(f.clone());
                if want(&f) {
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16384];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        None
    }

    fn parse_one(&mut self) -> Option<Frame> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = usize::from(self.buf[0]) << 16
            | usize::from(self.buf[1]) << 8
            | usize::from(self.buf[2]);
        if self.buf.len() < 9 + len {
            return None;
        }
        let head: Vec<u8> = self.buf.drain(..9 + len).collect();
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload: head[9..].to_vec(),
        })
    }
}

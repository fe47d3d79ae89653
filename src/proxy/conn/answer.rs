//! Pingora's own answers, seen as they are written.
//!
//! Pingora 0.9 answers a request its HTTP/1 parser refuses (NUL in a value, a space before the
//! colon, obs-fold, a bad request line, differing `Content-Length`s, ...) with `400`, and a
//! `CONNECT` with `405`, before any `ProxyHttp` hook runs, and logs neither above `debug`
//! (`pingora-proxy` `handle_new_request`). A response written on a connection whose current
//! request header tether has not been handed can only be one of those, so the stream reads its
//! status line to log and count the refusal (SPEC §3.7).

/// `HTTP/1.1 400`: the status line up to the end of its code.
const STATUS_END: usize = 12;

/// The first bytes written for one request, until its status code is in. It may arrive split
/// over several writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLine {
    head: [u8; STATUS_END],
    len: u8,
}

impl StatusLine {
    /// Takes the next bytes written; returns the answer once, when its status code is complete.
    pub fn feed(&mut self, written: &[u8]) -> Option<OwnAnswer> {
        let have = usize::from(self.len);
        if have >= STATUS_END || written.is_empty() {
            return None;
        }
        let take = written.len().min(STATUS_END - have);
        self.head[have..have + take].copy_from_slice(&written[..take]);
        self.len += take as u8;
        if usize::from(self.len) < STATUS_END {
            return None;
        }
        let code = &self.head[9..STATUS_END];
        let status = if self.head.starts_with(b"HTTP/1.") && code.iter().all(u8::is_ascii_digit) {
            code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        } else {
            0
        };
        Some(OwnAnswer::from_status(status))
    }
}

/// A response Pingora wrote before tether saw the request: a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnAnswer {
    /// `400`: the request did not parse.
    Malformed,
    /// `405`: a `CONNECT`, which Pingora does not proxy.
    ConnectMethod,
    /// Any other status (none is expected from Pingora 0.9.1); 0 when it did not parse.
    Other(u16),
}

impl OwnAnswer {
    fn from_status(status: u16) -> Self {
        match status {
            400 => OwnAnswer::Malformed,
            405 => OwnAnswer::ConnectMethod,
            other => OwnAnswer::Other(other),
        }
    }

    /// The status written.
    pub fn status(self) -> u16 {
        match self {
            OwnAnswer::Malformed => 400,
            OwnAnswer::ConnectMethod => 405,
            OwnAnswer::Other(status) => status,
        }
    }

    /// The `reason` label of `tether_refused_requests_total`.
    pub fn reason(self) -> &'static str {
        match self {
            OwnAnswer::Malformed => "malformed",
            OwnAnswer::ConnectMethod => "connect_method",
            OwnAnswer::Other(_) => "parser_other",
        }
    }

    /// What the log line says was refused.
    pub fn what(self) -> &'static str {
        match self {
            OwnAnswer::Malformed => {
                "request refused by the HTTP/1 parser (malformed header or request line)"
            }
            OwnAnswer::ConnectMethod => "CONNECT is not proxied",
            OwnAnswer::Other(_) => "request answered by the HTTP/1 parser before tether saw it",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(chunks: &[&[u8]]) -> Vec<OwnAnswer> {
        let mut line = StatusLine::default();
        chunks.iter().filter_map(|c| line.feed(c)).collect()
    }

    #[test]
    fn the_status_is_read_once_whatever_the_split() {
        let full = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(answer(&[full]), [OwnAnswer::Malformed]);
        assert_eq!(
            answer(&[b"HTTP/1.1 4", b"", b"0", b"5 Method Not Allowed\r\n", full]),
            [OwnAnswer::ConnectMethod]
        );
        assert_eq!(answer(&[b"HTTP/1.1 40"]), []);
        let bytes: Vec<&[u8]> = full.chunks(1).collect();
        assert_eq!(answer(&bytes), [OwnAnswer::Malformed]);
    }

    #[test]
    fn other_answers_are_still_refusals() {
        assert_eq!(answer(&[b"HTTP/1.0 431 x"]), [OwnAnswer::Other(431)]);
        assert_eq!(
            answer(&[b"\x00\x00\x00\x00 garbage"]),
            [OwnAnswer::Other(0)]
        );
        assert_eq!(OwnAnswer::Other(0).reason(), "parser_other");
        assert_eq!(OwnAnswer::Malformed.status(), 400);
    }
}

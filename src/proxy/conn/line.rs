//! A bare CR in an HTTP/1 request line, seen as the bytes arrive.
//!
//! Pingora 0.9 rewrites a request line its parser refuses by percent-encoding the target's
//! control bytes (`GET /a\rx` becomes `GET /a%0Dx`, `escape_illegal_request_line`) before any
//! hook runs, and the raw header bytes it hands over are the rewritten ones; so SPEC §3.7's
//! "a bad request line is 400" can only be enforced where the client's bytes pass, here.

/// Where the scan is in one request's first line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestLine {
    /// No byte of the line yet; empty lines before it are allowed (RFC 9112 §2.2).
    #[default]
    Before,
    /// Inside the line; `after_cr` when the last byte was a CR.
    In { after_cr: bool },
    /// The line ended; the rest of the header is Pingora's parser's business.
    Done,
}

impl RequestLine {
    /// Scans the next bytes of a request; true if they show a CR not followed by LF inside
    /// the request line. Returns at once when the line is over.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut bare = false;
        for &b in bytes {
            *self = match *self {
                RequestLine::Done => return bare,
                RequestLine::Before if b == b'\r' || b == b'\n' => RequestLine::Before,
                RequestLine::Before => RequestLine::In { after_cr: false },
                RequestLine::In { after_cr: true } if b == b'\n' => RequestLine::Done,
                RequestLine::In { after_cr } => {
                    bare |= after_cr;
                    match b {
                        b'\r' => RequestLine::In { after_cr: true },
                        // httparse accepts a bare LF as a line end.
                        b'\n' => RequestLine::Done,
                        _ => RequestLine::In { after_cr: false },
                    }
                }
            };
        }
        bare
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(chunks: &[&[u8]]) -> bool {
        let mut line = RequestLine::default();
        chunks.iter().fold(false, |seen, c| line.feed(c) | seen)
    }

    #[test]
    fn a_cr_not_followed_by_lf_in_the_request_line_is_bare() {
        assert!(bare(&[b"GET /a\rx HTTP/1.1\r\n"]));
        assert!(
            bare(&[b"GET /a\r", b"x HTTP/1.1\r\n"]),
            "split across reads"
        );
        assert!(bare(&[b"GET / HTTP/1.1\r\r\n"]));
        assert!(bare(&[b"\r\nGET /\rx HTTP/1.1\r\n"]), "after an empty line");
    }

    #[test]
    fn line_ends_and_later_lines_are_not_its_business() {
        assert!(!bare(&[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(!bare(&[b"GET /a HTTP/1.1\r", b"\nHost: x\ry\r\n"]));
        assert!(!bare(&[b"GET /a HTTP/1.1\nX: \r\r\n"]));
        assert!(!bare(&[b"\r\n\r\nGET /a%0Dx HTTP/1.1\r\n"]));
    }
}

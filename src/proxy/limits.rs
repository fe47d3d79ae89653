//! Requests tether refuses itself (SPEC §3.7), on top of what Pingora's parser already refuses
//! (NUL/CR/LF in values, obs-fold, bad request lines, conflicting `Content-Length`s): an
//! oversized header block, and `Content-Length` together with `Transfer-Encoding`.
//!
//! Pingora percent-encodes control bytes and spaces in an HTTP/1 target before any hook runs,
//! and the raw header bytes are the rewritten ones, so [`Refused::BadTarget`] is found here only
//! for what escapes that rewrite; a bare CR in the request line is caught as it is read
//! (`conn::line`).

use pingora::http::RequestHeader;

/// Why a request is refused before anything is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The header block is larger than `limits.max_request_header_bytes`: 431.
    HeaderTooLarge { size: usize, limit: usize },
    /// `Content-Length` with `Transfer-Encoding`, the request-smuggling shape: 400.
    AmbiguousLength,
    /// Several `Content-Length` headers or one that is not a number: 400.
    BadContentLength,
    /// A control character or space inside the request target: 400.
    BadTarget,
}

impl Refused {
    /// The status tether answers with.
    pub fn status(self) -> u16 {
        match self {
            Refused::HeaderTooLarge { .. } => 431,
            Refused::AmbiguousLength | Refused::BadContentLength | Refused::BadTarget => 400,
        }
    }

    /// The `reason` label of `tether_refused_requests_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::HeaderTooLarge { .. } => "header_too_large",
            Refused::AmbiguousLength => "content_length_with_transfer_encoding",
            Refused::BadContentLength => "bad_content_length",
            Refused::BadTarget => "bad_target",
        }
    }

    /// The short plain-text body sent to the client.
    pub fn body(self) -> &'static str {
        match self {
            Refused::HeaderTooLarge { .. } => "request header fields too large\n",
            Refused::AmbiguousLength => "bad request: Content-Length with Transfer-Encoding\n",
            Refused::BadContentLength => "bad request: invalid Content-Length\n",
            Refused::BadTarget => "bad request: invalid request target\n",
        }
    }
}

/// The size of a header block as HTTP/2 would count it when no raw bytes exist:
/// the request line plus `name: value\r\n` per field.
pub fn header_block_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.uri.to_string().len() + 12;
    req.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// Checks a request against `limit` and its framing. `raw` is the HTTP/1 header block as
/// received: Pingora drops `Content-Length` when `Transfer-Encoding` is present (RFC 9112 §6.3),
/// so the smuggling shape is only visible there.
pub fn check(req: &RequestHeader, raw: Option<&[u8]>, limit: usize) -> Result<(), Refused> {
    let size = raw.map_or_else(|| header_block_size(req), <[u8]>::len);
    if size > limit {
        return Err(Refused::HeaderTooLarge { size, limit });
    }
    // The target as received: between the request line's first and last space.
    let target: &[u8] = match raw.and_then(|r| r.split(|&b| b == b'\n').next()) {
        Some(line) => {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let first = line.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
            let last = line
                .iter()
                .rposition(|&b| b == b' ')
                .unwrap_or(line.len())
                .max(first);
            &line[first..last]
        }
        None => req.raw_path(),
    };
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Refused::BadTarget);
    }
    let (mut lengths, mut chunked) = (0usize, false);
    let mut count = |name: &[u8], value: &[u8]| -> Result<(), Refused> {
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            let v = value.trim_ascii();
            if lengths > 1 || v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(Refused::BadContentLength);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        }
        Ok(())
    };
    match raw {
        Some(raw) => {
            for line in raw.split(|&b| b == b'\n').skip(1) {
                if let Some(colon) = line.iter().position(|&b| b == b':') {
                    count(line[..colon].trim_ascii(), &line[colon + 1..])?;
                }
            }
        }
        None => {
            for (name, value) in req.headers.iter() {
                count(name.as_str().as_bytes(), value.as_bytes())?;
            }
        }
    }
    if lengths > 0 && chunked {
        return Err(Refused::AmbiguousLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn oversized_header_block_is_431() {
        let r = req(&[("cookie", "a=1")]);
        let raw = vec![b'x'; 70_000];
        assert_eq!(check(&r, Some(&raw), 65_536).unwrap_err().status(), 431);
        assert!(check(&r, None, 65_536).is_ok());
        let big = req(&[("cookie", &"x".repeat(70_000))]);
        assert_eq!(check(&big, None, 65_536).unwrap_err().status(), 431);
    }

    #[test]
    fn smuggling_shapes_are_400() {
        let raw = |s: &str| s.as_bytes().to_vec();
        let r = req(&[]);
        let both =
            raw("POST / HTTP/1.1\r\nContent-Length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(
            check(&r, Some(&both), 65_536),
            Err(Refused::AmbiguousLength)
        );
        let two = raw("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(
            check(&r, Some(&two), 65_536),
            Err(Refused::BadContentLength)
        );
        let junk = raw("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n");
        assert_eq!(
            check(&r, Some(&junk), 65_536),
            Err(Refused::BadContentLength)
        );
        assert!(check(
            &r,
            Some(&raw("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")),
            65_536
        )
        .is_ok());
        assert!(check(
            &r,
            Some(&raw(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            65_536
        )
        .is_ok());
        let parsed = req(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert_eq!(check(&parsed, None, 65_536), Err(Refused::AmbiguousLength));
    }

    #[test]
    fn control_bytes_in_the_target_are_400() {
        let r = RequestHeader::build("GET", b"/", None).unwrap();
        let bad = b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(check(&r, Some(bad), 65_536), Err(Refused::BadTarget));
        let ok = b"GET /a%01b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(check(&r, Some(ok), 65_536).is_ok());
    }
}

//! One access-log line per request at `info` (SPEC §1), under the log target `access`.
//!
//! The line is formatted straight into the logger's buffer: no intermediate `String`s, and
//! durations printed with integer arithmetic, since this runs once per request.
//!
//! Everything the client chose (Host, method, path) goes through [`Escaped`], so no request can
//! end a field early or write a field of its own (SPEC §3.7).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use pingora::Error;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
pub(crate) use crate::telemetry::escape::Escaped;

/// A client address, or `-` before one was known.
struct Client(Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // `Ipv4Addr`'s own Display supports padding and goes through `fmt` four times; it
            // was a quarter of the line's cost.
            Some(IpAddr::V4(v4)) => {
                let (buf, n) = super::forwarded::dotted(v4);
                f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
            }
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Milliseconds with two decimals (`-1.00` when unknown), as the log has always shown them.
struct Millis(Option<Duration>);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => {
                // u64 arithmetic: u128 division is a library call.
                let centi = u64::try_from(d.as_micros()).unwrap_or(u64::MAX) / 10;
                write!(f, "{}.{:02}", centi / 100, centi % 100)
            }
            None => f.write_str("-1.00"),
        }
    }
}

/// ` error="…"` for a failed request, nothing otherwise.
struct ErrorNote<'a>(Option<&'a Error>);

impl fmt::Display for ErrorNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // Rare; an error's text may quote what the client sent, so it is escaped too.
            Some(e) => write!(f, " error=\"{}\"", Escaped(e.to_string().as_bytes())),
            None => Ok(()),
        }
    }
}

/// The request's path as received (without the query), even when it is not UTF-8 and the URI
/// holds only a lossy rendering of it.
fn path(req: &pingora::http::RequestHeader) -> &[u8] {
    if req.raw_path_is_utf8() {
        return req.uri.path().as_bytes();
    }
    let raw = req.raw_path();
    raw.split(|&b| b == b'?').next().unwrap_or(raw)
}

/// Pingora's request summary (`GET /path?query, Host: host`, as in its error lines) with the
/// client's bytes escaped like an access-log field.
pub(crate) fn summary(req: &pingora::http::RequestHeader) -> String {
    format!(
        "{} {}, Host: {}",
        Escaped(req.method.as_str().as_bytes()),
        Escaped(req.raw_path()),
        Escaped(super::facts::host_bytes(req)),
    )
}

/// Logs the finished request.
pub fn write(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let (endpoint, outcome) = match (&ctx.snapshot, &ctx.decision) {
        (Some(snap), Some(d)) => (snap.endpoint(d.target).label.as_str(), d.outcome.as_str()),
        _ => ("-", "-"),
    };
    log::info!(
        target: "access",
        "{client} {host} \"{method} {path}\" {status} endpoint={endpoint} affinity={outcome} upstream_ms={upstream} total_ms={total}{error}",
        client = Client(ctx.facts.map(|f| f.client)),
        host = Escaped(super::facts::host_bytes(req)),
        method = Escaped(req.method.as_str().as_bytes()),
        path = Escaped(path(req)),
        upstream = Millis(ctx.timing.upstream),
        total = Millis(Some(ctx.timing.started.elapsed())),
        error = ErrorNote(e),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_has_two_decimals() {
        assert_eq!(
            Millis(Some(Duration::from_micros(1_234))).to_string(),
            "1.23"
        );
        assert_eq!(Millis(Some(Duration::from_micros(50))).to_string(), "0.05");
        assert_eq!(Millis(Some(Duration::from_secs(2))).to_string(), "2000.00");
        assert_eq!(Millis(None).to_string(), "-1.00");
        assert_eq!(Client(None).to_string(), "-");
        for ip in ["0.0.0.0", "10.2.30.255", "192.168.100.9", "255.255.255.255"] {
            assert_eq!(Client(ip.parse().ok()).to_string(), ip);
        }
        assert_eq!(
            Client("2001:db8::1".parse().ok()).to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn escaped_client_bytes_cannot_end_a_field() {
        assert_eq!(
            Escaped(b"shop.example:8080").to_string(),
            "shop.example:8080"
        );
        assert_eq!(Escaped(b"/a/b?c=d&e=%20").to_string(), "/a/b?c=d&e=%20");
        assert_eq!(
            Escaped(b"x\" 200 endpoint=web/a").to_string(),
            "x\\x22\\x20200\\x20endpoint=web/a"
        );
        assert_eq!(
            Escaped(b"\r\n\t\x00\x7f\\").to_string(),
            "\\x0d\\x0a\\x09\\x00\\x7f\\x5c"
        );
        assert_eq!(Escaped("caf\u{e9}".as_bytes()).to_string(), "caf\\xc3\\xa9");
        assert_eq!(Escaped(b"").to_string(), "");
    }

    #[test]
    fn pingora_summary_escapes_host_and_path() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/a\"b\\c?q=1", None).unwrap();
        req.insert_header("host", &b"shop\xff\" 200 x"[..]).unwrap();
        assert_eq!(
            summary(&req),
            "GET /a\\x22b\\x5cc?q=1, Host: shop\\xff\\x22\\x20200\\x20x"
        );
    }
}

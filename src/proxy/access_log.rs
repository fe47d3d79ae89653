//! One access-log line per request at `info` (SPEC §1), under the log target `access`.
//!
//! The line is written byte by byte into the log buffer: no `fmt`, no intermediate `String`s, and
//! durations printed with integer arithmetic, since this runs once per request.
//!
//! Everything the client chose (Host, method, path) goes through [`Escaped`], so no request can
//! end a field early or write a field of its own (SPEC §3.7).

use std::fmt;
use std::time::Duration;

use pingora::Error;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
pub(crate) use crate::telemetry::escape::Escaped;
use crate::telemetry::log_sink;

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

/// Logs the finished request. The line is written byte by byte into the log buffer
/// ([`log_sink::access_line`]): through `log::info!` and `fmt` it cost four times as much.
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
    let total = ctx.timing.started.elapsed();
    log_sink::access_line(|out| {
        match ctx.facts.map(|f| f.client) {
            Some(ip) => super::forwarded::write_ip(out, ip),
            None => out.push(b'-'),
        }
        out.push(b' ');
        Escaped(super::facts::host_bytes(req)).push_to(out);
        out.extend_from_slice(b" \"");
        Escaped(req.method.as_str().as_bytes()).push_to(out);
        out.push(b' ');
        Escaped(path(req)).push_to(out);
        out.extend_from_slice(b"\" ");
        push_u64(out, u64::from(status));
        out.extend_from_slice(b" endpoint=");
        out.extend_from_slice(endpoint.as_bytes());
        out.extend_from_slice(b" affinity=");
        out.extend_from_slice(outcome.as_bytes());
        out.extend_from_slice(b" upstream_ms=");
        push_millis(out, ctx.timing.upstream);
        out.extend_from_slice(b" total_ms=");
        push_millis(out, Some(total));
        if e.is_some() {
            // Rare: through `fmt`, as before.
            let _ = std::io::Write::write_fmt(out, format_args!("{}", ErrorNote(e)));
        }
    });
}

/// `v` in decimal.
fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Milliseconds with two decimals (`-1.00` when unknown), as the log has always shown them;
/// u64 arithmetic (u128 division is a library call).
fn push_millis(out: &mut Vec<u8>, d: Option<Duration>) {
    let Some(d) = d else {
        out.extend_from_slice(b"-1.00");
        return;
    };
    let centi = u64::try_from(d.as_micros()).unwrap_or(u64::MAX) / 10;
    push_u64(out, centi / 100);
    out.push(b'.');
    out.extend_from_slice(&[b'0' + (centi % 100 / 10) as u8, b'0' + (centi % 10) as u8]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(d: Option<Duration>) -> String {
        let mut out = Vec::new();
        push_millis(&mut out, d);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn millis_have_two_decimals() {
        assert_eq!(millis(Some(Duration::from_micros(1_234))), "1.23");
        assert_eq!(millis(Some(Duration::from_micros(50))), "0.05");
        assert_eq!(millis(Some(Duration::from_micros(9))), "0.00");
        assert_eq!(millis(Some(Duration::from_secs(2))), "2000.00");
        assert_eq!(millis(None), "-1.00");
        for v in [0, 7, 200, 404, 65_535, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(String::from_utf8(out).ok(), Some(v.to_string()));
        }
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

//! One access-log line per request at `info` (SPEC §1), under the log target `access`.
//!
//! The line is formatted straight into the logger's buffer: no intermediate `String`s, and
//! durations printed with integer arithmetic, since this runs once per request.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use pingora::Error;
use pingora_proxy::Session;

use super::ctx::RequestCtx;

/// A client address, or `-` before one was known.
struct Client(Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
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
                let centi = d.as_micros() / 10;
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
            Some(e) => write!(f, " error=\"{e}\""),
            None => Ok(()),
        }
    }
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
        host = super::facts::host(req),
        method = req.method,
        path = req.uri.path(),
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
    }
}

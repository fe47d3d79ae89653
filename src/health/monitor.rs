//! The pure side of health checks: judging one answer against a monitor's settings, and the
//! bookkeeping that turns a run of check results into a health verdict. The probes themselves
//! (sockets, TLS) are in `probe`; keeping the counting here makes the `consecutive_up` /
//! `consecutive_down` rules unit-testable without a socket.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::config::MonitorSpec;

/// How many bytes of a response body `expected_body` is searched in (Cloudflare: the first 10 KB).
pub const BODY_LIMIT: usize = 10 * 1024;

// The monitor's settings (`MonitorSpec`) are parsed by validation (`crate::config`); what a
// check does with them is decided here.
impl MonitorSpec {
    /// The address to probe for an endpoint at `addr`: its own, or its IP with `port`.
    pub fn target(&self, addr: SocketAddr) -> SocketAddr {
        match self.port {
            0 => addr,
            p => SocketAddr::new(addr.ip(), p),
        }
    }

    /// Judges an HTTP answer: `Ok` when the status is expected and, if `expected_body` is set,
    /// the first [`BODY_LIMIT`] bytes of `body` contain it (case-insensitive, as Cloudflare).
    pub fn judge(&self, status: u16, body: &[u8]) -> Result<(), CheckFailure> {
        if !self.expected_codes.matches(status) {
            return Err(CheckFailure::Status {
                expected: self.expected_codes_text.clone(),
                got: status,
            });
        }
        if !self.expected_body.is_empty() {
            let head = &body[..body.len().min(BODY_LIMIT)];
            let text = String::from_utf8_lossy(head).to_lowercase();
            if !text.contains(&self.expected_body) {
                return Err(CheckFailure::Body {
                    expected: self.expected_body.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why one check failed, worded for the transition log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// The endpoint answered with a status outside `expected_codes`.
    Status { expected: String, got: u16 },
    /// The body lacks `expected_body`.
    Body { expected: String },
    /// No answer within the monitor's `timeout`.
    Timeout(Duration),
    /// Connecting, the TLS handshake, or the exchange failed.
    Io(String),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Status { expected, got } => write!(f, "expected {expected}, got {got}"),
            CheckFailure::Body { expected } => {
                write!(f, "response body does not contain {expected:?}")
            }
            CheckFailure::Timeout(t) => write!(f, "no answer within {} s", t.as_secs()),
            CheckFailure::Io(e) => f.write_str(e),
        }
    }
}

/// A run of equal check results for one endpoint; survives reloads with the endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    /// Positive: successes in a row; negative: failures in a row.
    run: i64,
}

impl Streak {
    /// Adds a result. Returns the new verdict when the run has just reached the threshold that
    /// flips `healthy` (`consecutive_up` successes or `consecutive_down` failures in a row);
    /// `None` while the verdict stands. Only a flip is reported, never a confirmation.
    pub fn record(&mut self, ok: bool, healthy: bool, up: u32, down: u32) -> Option<bool> {
        self.run = match (ok, self.run) {
            (true, r) if r > 0 => r.saturating_add(1),
            (true, _) => 1,
            (false, r) if r < 0 => r.saturating_sub(1),
            (false, _) => -1,
        };
        match (ok, healthy) {
            (true, false) if self.run >= i64::from(up) => Some(true),
            (false, true) if -self.run >= i64::from(down) => Some(false),
            _ => None,
        }
    }

    /// How many equal results in a row (0 before the first), for log lines.
    pub fn in_a_row(&self) -> u64 {
        self.run.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> MonitorSpec {
        let yaml = format!("id: m\n{extra}");
        let m: crate::config::Monitor = serde_yaml::from_str(&yaml).unwrap();
        let codes = crate::config::ExpectedCodes::parse(&m.expected_codes).unwrap();
        MonitorSpec::compile(&m, codes)
    }

    #[test]
    fn defaults_are_cloudflares() {
        let s = spec("");
        assert_eq!((s.method.as_str(), s.path.as_str()), ("GET", "/"));
        assert_eq!((s.interval.as_secs(), s.timeout.as_secs()), (60, 5));
        assert!(s.judge(204, b"").is_ok());
        assert_eq!(
            s.judge(503, b"").unwrap_err().to_string(),
            "expected 2xx, got 503"
        );
    }

    #[test]
    fn host_header_is_split_from_the_others() {
        let s = spec("header: { Host: [app.internal], X-Probe: [a, b] }");
        assert_eq!(s.host.as_deref(), Some("app.internal"));
        assert_eq!(
            s.headers,
            vec![
                ("X-Probe".into(), "a".into()),
                ("X-Probe".into(), "b".into())
            ]
        );
    }

    #[test]
    fn body_is_searched_case_insensitively_in_the_first_10_kb() {
        let s = spec("expected_body: All Good");
        assert!(s.judge(200, b"status: all good\n").is_ok());
        assert!(matches!(
            s.judge(200, b"degraded"),
            Err(CheckFailure::Body { .. })
        ));
        let mut late = vec![b' '; BODY_LIMIT];
        late.extend_from_slice(b"all good");
        assert!(s.judge(200, &late).is_err());
    }

    #[test]
    fn port_override_keeps_the_ip() {
        let s = spec("port: 8081");
        let addr: SocketAddr = "127.0.0.2:9000".parse().unwrap();
        assert_eq!(s.target(addr), "127.0.0.2:8081".parse().unwrap());
        assert_eq!(spec("").target(addr), addr);
    }

    #[test]
    fn streak_flips_only_at_the_thresholds() {
        let mut s = Streak::default();
        // healthy, down after 3 failures in a row; a success in between restarts the count.
        assert_eq!(s.record(false, true, 2, 3), None);
        assert_eq!(s.record(false, true, 2, 3), None);
        assert_eq!(s.record(true, true, 2, 3), None);
        assert_eq!(s.record(false, true, 2, 3), None);
        assert_eq!(s.record(false, true, 2, 3), None);
        assert_eq!(s.record(false, true, 2, 3), Some(false));
        assert_eq!(s.in_a_row(), 3);
        // unhealthy, up after 2 successes in a row.
        assert_eq!(s.record(true, false, 2, 3), None);
        assert_eq!(s.record(true, false, 2, 3), Some(true));
        // a confirmation is not a flip.
        assert_eq!(s.record(true, true, 2, 3), None);
    }

    #[test]
    fn one_failure_flips_with_consecutive_down_1() {
        let mut s = Streak::default();
        assert_eq!(s.in_a_row(), 0);
        assert_eq!(s.record(false, true, 1, 1), Some(false));
    }
}

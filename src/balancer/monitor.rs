//! Health monitors as the balancer sees them: a monitor's settings compiled once per snapshot,
//! and the pure bookkeeping that turns a run of check results into a health verdict. The probes
//! themselves (sockets, TLS) live in `crate::health`; keeping the counting here makes the
//! `consecutive_up` / `consecutive_down` rules unit-testable without a socket.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ExpectedCodes, Monitor, MonitorKind, TypedMonitor};

/// How many bytes of a response body `expected_body` is searched in (Cloudflare: the first 10 KB).
pub const BODY_LIMIT: usize = 10 * 1024;

/// One monitor, ready to probe with: every string parsed, every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    pub id: String,
    pub kind: MonitorKind,
    pub method: String,
    pub path: String,
    /// 0 = the endpoint's own port.
    pub port: u16,
    /// The `Host` to send; `None` = the endpoint's Host override, else its address.
    pub host: Option<String>,
    /// Every other configured header, in file order.
    pub headers: Vec<(String, String)>,
    pub expected_codes: ExpectedCodes,
    /// The text `expected_codes` was written as, for log lines.
    pub expected_codes_text: String,
    /// Lower-cased; empty = the body is not checked.
    pub expected_body: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub consecutive_up: u32,
    pub consecutive_down: u32,
}

impl MonitorSpec {
    /// Compiles a validated monitor with the values validation parsed.
    pub fn compile(m: &Monitor, typed: &TypedMonitor) -> MonitorSpec {
        let expected_codes = typed.expected_codes.clone();
        let mut host = None;
        let mut headers = Vec::new();
        for (name, values) in &m.header {
            for v in values {
                if name.eq_ignore_ascii_case("host") {
                    host.get_or_insert_with(|| v.clone());
                } else {
                    headers.push((name.clone(), v.clone()));
                }
            }
        }
        MonitorSpec {
            id: m.id.clone(),
            kind: m.kind,
            method: m.method.clone(),
            path: m.path.clone(),
            port: m.port,
            host,
            headers,
            expected_codes,
            expected_codes_text: m.expected_codes.clone(),
            expected_body: m.expected_body.to_lowercase(),
            interval: Duration::from_secs(m.interval),
            timeout: Duration::from_secs(m.timeout),
            consecutive_up: m.consecutive_up.max(1),
            consecutive_down: m.consecutive_down.max(1),
        }
    }

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

    /// How many equal results in a row, for log lines.
    pub fn len(&self) -> u64 {
        self.run.unsigned_abs()
    }

    /// True before the first result.
    pub fn is_empty(&self) -> bool {
        self.run == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> MonitorSpec {
        let yaml = format!("id: m\n{extra}");
        let m: Monitor = serde_yaml::from_str(&yaml).unwrap();
        let typed = TypedMonitor {
            expected_codes: ExpectedCodes::parse(&m.expected_codes).unwrap(),
        };
        MonitorSpec::compile(&m, &typed)
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
        assert_eq!(s.len(), 3);
        // unhealthy, up after 2 successes in a row.
        assert_eq!(s.record(true, false, 2, 3), None);
        assert_eq!(s.record(true, false, 2, 3), Some(true));
        // a confirmation is not a flip.
        assert_eq!(s.record(true, true, 2, 3), None);
    }

    #[test]
    fn one_failure_flips_with_consecutive_down_1() {
        let mut s = Streak::default();
        assert!(s.is_empty());
        assert_eq!(s.record(false, true, 1, 1), Some(false));
    }
}

//! Carrying out the two retries tether makes: zero-downtime failover (SPEC §3.4) when a
//! connection to an endpoint fails, and a retry on a listed status (SPEC §3.9) when it answered.
//! `balancer::failover` decides; this records the decision in the request's context so that
//! Pingora's retry calls `upstream_peer` again with the new target, and reports the retry once.
//!
//! Pingora 0.9 has no hook to retry an answer, so a status retry is an error with `retry` set,
//! returned from `upstream_response_filter` before the answer's header is written downstream
//! (docs/design.md, "Retrying on a response": why that is safe).

use http::Method;
use pingora::{Error, ErrorType};
use pingora_proxy::Session;

use crate::affinity::rendezvous::HashKey;
use crate::balancer::steering::PickFacts;
use crate::balancer::{failover, Cause, Decision, Outcome, Snapshot};

use super::ctx::RequestCtx;

/// Handles a connect-level failure (refused, timeout, unreachable, TLS handshake): nothing was
/// sent upstream, so any method is safe to retry. Marks `e` retryable exactly when a failover
/// target was found and put in `ctx.decision`; otherwise the error stands and the client gets 502.
pub fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let (Some(snap), Some(failed), Some(facts)) = (&ctx.snapshot, ctx.decision, &ctx.facts) else {
        return e;
    };
    // An endpoint with several addresses is unreachable only once all of them failed (SPEC
    // §3.10): the next one first, on the same endpoint, with no failover counted.
    if let Some((down, next)) = ctx.attempts.next_address() {
        log::info!(
            "{}: {down}{}; trying its next address {next}",
            snap.endpoint(failed.target).label,
            Why(&e)
        );
        e.set_retry(true);
        return e;
    }
    let pick = PickFacts {
        client: HashKey::of_ip(facts.client),
        random: fastrand::u64(..),
    };
    // The routing time, not a second clock read: the cookie's Max-Age is counted from it.
    match failover(
        snap,
        &failed,
        &ctx.attempts.tried,
        pick,
        facts.now,
        Cause::Connect,
    ) {
        Some(next) => {
            report_failover(snap, &failed, &next, &e);
            ctx.decision = Some(next);
            e.set_retry(true);
        }
        None => {
            log::warn!(
                "{}{}, no failover: answering 502",
                snap.endpoint(failed.target).label,
                Why(&e)
            );
            e.set_retry(false);
        }
    }
    e
}

/// The error that carries a status retry from `upstream_response_filter` back to Pingora's retry
/// loop; no other code makes it, so `error_while_proxy` can recognise it.
pub const RETRY_ON_STATUS: ErrorType = ErrorType::Custom("retry on status");

/// Handles an answer with `status` before any byte of it is written to the client. `Some` is
/// the error to return from `upstream_response_filter`: the balancer lists `status`, the request
/// may be sent again ([`resendable`]) and `balancer::failover` found another endpoint, now in
/// `ctx.decision`. `None`: the answer goes to the client as it is.
///
/// The common case — a status not listed — is a bit test, and nothing is allocated.
pub fn on_status(session: &mut Session, ctx: &mut RequestCtx, status: u16) -> Option<Box<Error>> {
    let (Some(snap), Some(failed), Some(facts)) = (&ctx.snapshot, ctx.decision, &ctx.facts) else {
        return None;
    };
    if !snap.balancers[failed.balancer].retry_on.contains(status) || !resendable(session) {
        return None;
    }
    let pick = PickFacts {
        client: HashKey::of_ip(facts.client),
        random: fastrand::u64(..),
    };
    let cause = Cause::Status(status);
    let next = failover(snap, &failed, &ctx.attempts.tried, pick, facts.now, cause)?;
    report_retry(snap, &failed, &next, status);
    ctx.decision = Some(next);
    let mut e = Error::explain(RETRY_ON_STATUS, "the answer's status is in retry_on_status");
    e.set_retry(true);
    Some(e)
}

/// Whether the request may be sent again (SPEC §3.9): an idempotent method (GET, HEAD, OPTIONS,
/// PUT, DELETE — not TRACE, which `Method::is_idempotent` also counts), no byte of any answer
/// (a 1xx included) written to the client, and a body that is empty or read to its end within
/// Pingora's retry buffer (64 KiB), which Pingora sends again on the retry. A body still
/// arriving is not retried: tether would not hold it whole.
fn resendable(session: &mut Session) -> bool {
    let idempotent = matches!(
        session.req_header().method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    if !idempotent || session.response_written().is_some() {
        return false;
    }
    let body = session.as_mut();
    body.is_body_empty() || (body.is_body_done() && !body.retry_buffer_truncated())
}

/// The one place a status retry is reported: one log line (balancer, from, status, to) and
/// `tether_retries_total{reason="status_<code>"}`.
fn report_retry(snap: &Snapshot, failed: &Decision, next: &Decision, status: u16) {
    let balancer = snap.balancers[next.balancer].name.as_str();
    crate::telemetry::metrics::record_status_retry(balancer, status);
    log::warn!(
        "{} answered {status}: retry on {} (balancer {balancer}, retry_on_status, {})",
        snap.endpoint(failed.target).label,
        snap.endpoint(next.target).label,
        next.outcome.as_str(),
    );
}

/// The one place a failover is reported: the log line here, and the metrics counter beside it
/// (`mode` is `temporary` or `sticky`).
fn report_failover(snap: &Snapshot, failed: &Decision, next: &Decision, e: &Error) {
    let balancer = snap.balancers[next.balancer].name.as_str();
    let mode = match next.outcome {
        Outcome::FailoverSticky => "sticky",
        _ => "temporary",
    };
    crate::telemetry::metrics::record_failover(balancer, mode);
    log::warn!(
        "{}{}: failover-{mode} retry on {} (balancer {balancer})",
        snap.endpoint(failed.target).label,
        Why(e),
        snap.endpoint(next.target).label,
    );
}

/// Why a connect failed, after the endpoint's label: ` unreachable (ConnectRefused)`, or for
/// TLS (Cloudflare's 525/526) the handshake's own reason,
/// `: certificate verify failed (InvalidCert, SNI app.internal)`.
struct Why<'a>(&'a Error);

impl std::fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.0.etype().as_str();
        let tls = |context: &str| TlsReason::parse(context);
        match self.0.etype() {
            ErrorType::InvalidCert => {
                let r = tls(self.0.context.as_ref().map_or("", |c| c.as_str()));
                write!(f, ": {} ({kind}{})", r.reason, r.sni)
            }
            ErrorType::TLSHandshakeFailure => {
                let r = tls(self.0.context.as_ref().map_or("", |c| c.as_str()));
                write!(f, ": TLS handshake failed: {} ({kind}{})", r.reason, r.sni)
            }
            _ => write!(f, " unreachable ({kind})"),
        }
    }
}

/// The parts of Pingora's TLS error context (`TLS connect() failed: error:0A000086:SSL
/// routines:FUNCTION:certificate verify failed:FILE:LINE:DATA, SNI: name`) worth a log line.
#[derive(Debug, PartialEq, Eq)]
struct TlsReason {
    /// OpenSSL's reason, and its detail when it gives one.
    reason: String,
    /// `, SNI name`, or empty.
    sni: String,
}

impl TlsReason {
    fn parse(context: &str) -> TlsReason {
        let rest = context
            .strip_prefix("TLS connect() failed: ")
            .unwrap_or(context);
        let (stack, sni) = match rest.rsplit_once(", SNI: ") {
            Some((stack, sni)) => (stack, format!(", SNI {sni}")),
            None => (rest, String::new()),
        };
        // error:CODE:LIBRARY:FUNCTION:REASON:FILE:LINE:DATA — keep REASON and DATA.
        let fields: Vec<&str> = stack
            .find("error:")
            .map(|at| stack[at..].splitn(8, ':').collect())
            .unwrap_or_default();
        let reason = match fields.as_slice() {
            [_, _, _, _, reason, _, _, data] if !data.trim().is_empty() => {
                format!("{reason}: {}", data.trim())
            }
            [_, _, _, _, reason, ..] => reason.to_string(),
            _ => stack.to_string(),
        };
        TlsReason { reason, sni }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_reason_keeps_openssl_reason_detail_and_sni() {
        let ctx = "TLS connect() failed: error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:ssl/statem/statem_clnt.c:2125:, SNI: origin.test";
        let r = TlsReason::parse(ctx);
        assert_eq!(r.reason, "certificate verify failed");
        assert_eq!(r.sni, ", SNI origin.test");
        let with_data = "TLS connect() failed: error:0A000086:SSL routines:x:certificate verify failed:f.c:1:Verify error:certificate has expired, SNI: a";
        assert_eq!(
            TlsReason::parse(with_data).reason,
            "certificate verify failed: Verify error:certificate has expired"
        );
        let other = TlsReason::parse("something else");
        assert_eq!(
            (other.reason.as_str(), other.sni.as_str()),
            ("something else", "")
        );
    }
}

//! Carrying out zero-downtime failover (SPEC §3.4) when a connection to an endpoint fails.
//! `balancer::failover` decides; this records the decision in the request's context so that
//! Pingora's retry calls `upstream_peer` again with the new target, and reports the retry once.

use pingora::Error;

use crate::affinity::rendezvous::HashKey;
use crate::balancer::steering::PickFacts;
use crate::balancer::{failover, Decision, Outcome, Snapshot};

use super::ctx::RequestCtx;

/// Handles a connect-level failure (refused, timeout, unreachable, TLS handshake): nothing was
/// sent upstream, so any method is safe to retry. Marks `e` retryable exactly when a failover
/// target was found and put in `ctx.decision`; otherwise the error stands and the client gets 502.
pub fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let (Some(snap), Some(failed), Some(facts)) = (&ctx.snapshot, ctx.decision, &ctx.facts) else {
        return e;
    };
    let pick = PickFacts {
        client: HashKey::of_ip(facts.client),
        random: fastrand::u64(..),
    };
    // The routing time, not a second clock read: the cookie's Max-Age is counted from it.
    match failover(snap, &failed, &ctx.attempts.tried, pick, facts.now) {
        Some(next) => {
            report_failover(snap, &failed, &next, &e);
            ctx.decision = Some(next);
            e.set_retry(true);
        }
        None => {
            log::warn!(
                "{} unreachable ({}), no failover: answering 502",
                snap.endpoint(failed.target).label,
                e.etype().as_str()
            );
            e.set_retry(false);
        }
    }
    e
}

/// The one place a failover is reported: the log line here, and the metrics counter beside it
/// (`mode` is `temporary` or `sticky`).
fn report_failover(snap: &Snapshot, failed: &Decision, next: &Decision, e: &Error) {
    let balancer = snap.balancers[next.balancer].name.as_str();
    let mode = match next.outcome {
        Outcome::FailoverSticky => "sticky",
        _ => "temporary",
    };
    crate::ops::metrics::record_failover(balancer, mode);
    log::warn!(
        "{} unreachable ({}): failover-{mode} retry on {} (balancer {balancer})",
        snap.endpoint(failed.target).label,
        e.etype().as_str(),
        snap.endpoint(next.target).label,
    );
}

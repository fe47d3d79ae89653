//! Zero-downtime failover (SPEC §3.4) as a pure decision: given the decision whose endpoint
//! could not be reached and what was tried, where the one retry goes and what happens to the
//! pin. The proxy's `fail_to_connect` hook only carries it out, so every rule here is unit-tested
//! without a socket.

use crate::config::Failover;

use super::decision::{Decision, Outcome};
use super::pinning;
use super::route::pick_in_pool;
use super::snapshot::{EndpointRef, Snapshot};
use super::steering::PickFacts;

/// Why a request is tried again elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The endpoint could not be reached (refused, timeout, unreachable, TLS): nothing was sent
    /// (SPEC §3.4). Retried only as `zero_downtime_failover` says.
    Connect,
    /// The endpoint answered with this status, which the balancer's `retry_on_status` lists
    /// (SPEC §3.9). The caller asks only when the request may be retried (idempotent, body held,
    /// no byte of the answer sent); retried whatever `zero_downtime_failover` says, which then
    /// only decides the pin: `sticky` re-pins, otherwise the session is left alone.
    Status(u16),
}

/// The retry for a request whose attempt at `failed.target` failed for `cause`, or `None` when
/// the client must get the error (502 for a connect failure, the answer itself for a status):
/// - `cause` is a connect failure and the balancer's `zero_downtime_failover` is `none`;
/// - a failover already happened for this request (one retry, as Cloudflare);
/// - no other endpoint that takes new sessions exists in the same pool, or, with
///   `failover_across_pools`, in the next eligible pool of `default_pools` (in order, wrapping
///   around) or the fallback pool.
///
/// `tried` holds every endpoint this request was sent to; none of them is chosen again.
///
/// "While its monitor still says healthy" (SPEC §3.4) holds by construction: routing never
/// picks an endpoint the monitor calls unhealthy, so the verdict that counts is the one at
/// routing time. Should the monitor flip while the connect is still timing out, the retry is
/// all the more right, so it is not re-checked here.
///
/// A session placed by consistent hashing (`ip_cookie`, `header`) is placed by its key again,
/// among the endpoints not tried; other sessions by the pool's steering.
///
/// The pin: `temporary` leaves a kept cookie or header session alone, so the client goes home
/// once its endpoint answers; `sticky` mints a new cookie to the endpoint that served (`sticky`
/// with header sessions is refused by validation, as Cloudflare). A session that was being
/// (re-)pinned anyway — a first visit, an expired or invalid cookie, a new header session, a
/// re-pin after unhealthy or drained — is pinned to the endpoint that served in both modes:
/// pinning it to an endpoint that just refused the connection would only send the client back
/// into the failure.
pub fn failover(
    snap: &Snapshot,
    failed: &Decision,
    tried: &[EndpointRef],
    facts: PickFacts,
    now: u64,
    cause: Cause,
) -> Option<Decision> {
    // `now` is the routing time (the clock is read once per request), so a sticky re-pin's
    // `Max-Age` is exactly the TTL.
    let lb = snap.balancers.get(failed.balancer)?;
    let mode = match (lb.affinity.failover, cause) {
        (Failover::None, Cause::Connect) => return None,
        // A retry on a status with `none` leaves the pin alone, as `temporary` does.
        (Failover::None, Cause::Status(_)) => Failover::Temporary,
        (mode, _) => mode,
    };
    let outcome = match mode {
        Failover::Sticky => Outcome::FailoverSticky,
        _ => Outcome::FailoverTemporary,
    };
    let already_failed_over = tried.iter().any(|&t| t != failed.target)
        || matches!(
            failed.outcome,
            Outcome::FailoverTemporary | Outcome::FailoverSticky
        );
    if already_failed_over {
        return None;
    }

    let key = failed.key;
    let home = failed.target.pool;
    let target = pick_in_pool(snap, home, facts, key, tried).or_else(|| {
        if !lb.affinity.failover_across_pools {
            return None;
        }
        let at = lb.pools.iter().position(|&p| p == home);
        let after_home = match at {
            Some(i) => lb.pools[i + 1..].iter().chain(&lb.pools[..i]),
            None => lb.pools[..].iter().chain(&lb.pools[..0]),
        };
        after_home
            .copied()
            .filter(|&p| p != home && snap.pools[p].eligible())
            .chain((lb.fallback != home).then_some(lb.fallback))
            .find_map(|p| pick_in_pool(snap, p, facts, key, tried))
    })?;

    // A session being pinned anyway (cookie minted, header session remembered) is pinned to
    // the endpoint that serves: the proxy pins to `target` when the response goes out.
    let expires = now + lb.affinity.ttl;
    let pin = pinning::for_mode(lb.affinity.mode).failover_pin(failed.pin, mode, expires);
    Some(Decision {
        balancer: failed.balancer,
        target,
        pin,
        outcome,
        key,
    })
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;

//! Counting a finished request in `/metrics`, from the logging hook: the core decides and never
//! records; the proxy records what was decided through the counter handles each balancer got at
//! commit (`telemetry::metrics::BalancerCounters`), never by a label lookup per request.

use std::time::Duration;

use crate::balancer::{Decision, Snapshot};
use crate::telemetry::metrics;

/// Counts a finished request: routed by `decision`, or answered by tether itself on behalf of
/// balancer `answered_by` (redirect, 503) or of none (404).
pub fn finished(
    snap: &Snapshot,
    decision: Option<&Decision>,
    answered_by: Option<usize>,
    status: u16,
    upstream: Option<Duration>,
) {
    match (decision, answered_by) {
        (Some(d), _) => {
            if let Some(c) = &snap.balancers[d.balancer].counters {
                let at = (d.target.pool, d.target.endpoint);
                c.routed(at, d.outcome as usize, status, upstream);
            }
        }
        (None, Some(b)) => {
            if let Some(c) = &snap.balancers[b].counters {
                c.answered(status);
            }
        }
        (None, None) => metrics::unrouted(status),
    }
}

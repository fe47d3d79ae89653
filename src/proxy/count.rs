//! The proxy's one call into metrics: what a finished request adds to `/metrics`.

use pingora_proxy::Session;

use crate::live::Live;
use crate::telemetry::metrics::{self, Finished};

use super::ctx::RequestCtx;

/// Records the finished request; a request that never read the snapshot is not counted.
pub fn record(session: &Session, ctx: &RequestCtx, live: &Live) {
    let Some(snap) = &ctx.snapshot else {
        return;
    };
    let balancer_without_decision = ctx.answered_by.map(|b| snap.balancers[b].name.as_str());
    metrics::record_request(
        snap,
        ctx.decision.as_ref(),
        Finished {
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            upstream: ctx.timing.upstream,
            balancer_without_decision,
            snapshot_is_live: live.is_current(snap),
        },
    );
}

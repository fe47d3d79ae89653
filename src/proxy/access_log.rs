//! One access-log line per request at `info` (SPEC §1), under the log target `access`.

use pingora::Error;
use pingora_proxy::Session;

use super::ctx::RequestCtx;

/// Logs the finished request.
pub fn write(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let client = ctx
        .facts
        .map(|f| f.client.to_string())
        .unwrap_or_else(|| "-".into());
    let (endpoint, outcome) = match (&ctx.snapshot, &ctx.decision) {
        (Some(snap), Some(d)) => (snap.endpoint(d.target).label.as_str(), d.outcome.as_str()),
        _ => ("-", "-"),
    };
    let upstream_ms = ctx.timing.upstream.map_or(-1.0, |d| d.as_secs_f64() * 1e3);
    let total_ms = ctx.timing.started.elapsed().as_secs_f64() * 1e3;
    let error = e.map(|e| format!(" error=\"{e}\"")).unwrap_or_default();
    log::info!(
        target: "access",
        "{client} {host} \"{method} {path}\" {status} endpoint={endpoint} affinity={outcome} upstream_ms={upstream_ms:.2} total_ms={total_ms:.2}{error}",
        host = super::facts::host(req),
        method = req.method,
        path = req.uri.path(),
    );
}

//! `access_log.format: json`: one JSON object per request, under the log target `access_json`
//! (written without the logger's `[time LEVEL target]` prefix, so every line parses as JSON).
//!
//! Field names follow the Elastic Common Schema / OpenTelemetry names that log shippers (Filebeat,
//! Vector, Fluent Bit, Datadog, Loki) map without parsing rules; tether's own fields are under
//! `tether.`. Every string, whatever the client sent, is escaped by `serde_json`. The object is
//! serialized into a reused per-thread buffer: no allocation per request beyond the log's own.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pingora::Error;
use pingora_proxy::Session;
use serde::{Serialize, Serializer};

use super::ctx::RequestCtx;

/// The log target of JSON access lines.
pub const TARGET: &str = "access_json";

/// One request, as written. docs/metrics-and-logs.md documents every field.
#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Timestamp,
    #[serde(rename = "http.request.id")]
    request_id: RequestId,
    #[serde(rename = "client.ip")]
    client: Option<IpAddr>,
    #[serde(rename = "source.ip")]
    peer: Option<IpAddr>,
    #[serde(rename = "url.domain")]
    host: &'a str,
    #[serde(rename = "http.request.method")]
    method: &'a str,
    #[serde(rename = "url.path")]
    path: &'a str,
    #[serde(rename = "url.query", skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(rename = "http.response.status_code")]
    status: Option<u16>,
    #[serde(rename = "http.request.body.bytes")]
    bytes_in: usize,
    #[serde(rename = "http.response.body.bytes")]
    bytes_out: usize,
    #[serde(rename = "event.duration")]
    duration_ns: u64,
    #[serde(rename = "tether.balancer")]
    balancer: Option<&'a str>,
    #[serde(rename = "tether.pool")]
    pool: Option<&'a str>,
    #[serde(rename = "tether.endpoint")]
    endpoint: Option<&'a str>,
    #[serde(rename = "destination.address")]
    upstream: Option<SocketAddr>,
    #[serde(rename = "tether.affinity")]
    outcome: Option<&'a str>,
    #[serde(rename = "tether.upstream.connect_ms")]
    connect_ms: Option<f64>,
    #[serde(rename = "tether.upstream.reused")]
    reused: Option<bool>,
    #[serde(rename = "tether.upstream.response_ms")]
    upstream_ms: Option<f64>,
    #[serde(rename = "tether.total_ms")]
    total_ms: f64,
    #[serde(rename = "error.message", skip_serializing_if = "Option::is_none")]
    error: Option<Shown<'a>>,
}

/// Now, RFC 3339 in UTC with milliseconds.
struct Timestamp(jiff::Timestamp);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:.3}", self.0))
    }
}

/// 128 random bits as 32 hex digits (as nginx's `$request_id`).
struct RequestId(u128);

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:032x}", self.0))
    }
}

/// Anything `Display`, serialized as a string without an intermediate `String`.
struct Shown<'a>(&'a dyn fmt::Display);

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

fn ms(d: Duration) -> f64 {
    // Microsecond resolution is all a log reader needs, and keeps the numbers short.
    (d.as_micros() as f64) / 1000.0
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Logs the finished request as one JSON object.
pub fn write(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    if !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let routed = match (&ctx.snapshot, &ctx.decision) {
        (Some(snap), Some(d)) => Some((snap, d)),
        _ => None,
    };
    let endpoint = routed.map(|(snap, d)| snap.endpoint(d.target));
    let record = Record {
        timestamp: Timestamp(jiff::Timestamp::now()),
        request_id: RequestId(fastrand::u128(..)),
        client: ctx.facts.map(|f| f.client),
        peer: ctx.facts.map(|f| f.peer),
        host: super::facts::host(req),
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        status: session.response_written().map(|r| r.status.as_u16()),
        bytes_in: session.body_bytes_read(),
        bytes_out: session.body_bytes_sent(),
        duration_ns: u64::try_from(ctx.timing.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        balancer: routed.map(|(snap, d)| snap.balancers[d.balancer].name.as_str()),
        pool: routed.map(|(snap, d)| snap.pools[d.target.pool].id.as_str()),
        endpoint: endpoint.map(|ep| ep.name.as_str()),
        upstream: endpoint.and(ctx.attempts.current_address()),
        outcome: routed.map(|(_, d)| d.outcome.as_str()),
        connect_ms: ctx.timing.upstream_connect.map(ms),
        reused: ctx
            .timing
            .upstream_connect
            .map(|_| ctx.timing.upstream_reused),
        upstream_ms: ctx.timing.upstream.map(ms),
        total_ms: ms(ctx.timing.started.elapsed()),
        error: e.map(|e| Shown(e)),
    };
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        if serde_json::to_writer(&mut *buf, &record).is_ok() {
            // serde_json writes UTF-8 only.
            if let Ok(line) = std::str::from_utf8(buf) {
                log::info!(target: TARGET, "{line}");
            }
        }
    });
}

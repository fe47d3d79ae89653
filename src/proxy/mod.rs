//! The Pingora adapter: each hook collects facts or carries out a decision of
//! `balancer::route`; no routing logic lives here.

mod access_json;
pub(crate) mod access_log;
mod acme;
pub mod conn;
mod count;
mod ctx;
mod facts;
pub mod forwarded;
pub mod guard;
pub mod hold;
pub mod limits;
mod redirect;
mod retry;
pub mod tls_accept;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::affinity::cookies::{has_cflb, push_without_cflb, set_cookie};
use crate::balancer::{admit, decide, PinAction, Refusal, RequestFacts};
use crate::clock::unix_now;
use crate::config::AccessLogFormat;
use crate::instance::Instance;
use crate::telemetry::refusals;
use crate::tls::origin;

pub use ctx::RequestCtx;
use ctx::{Arrival, InFlight};

/// tether's `ProxyHttp`: the adapter between Pingora's hooks and the routing decision. Every
/// request reads the live snapshot once and is routed by `balancer::route`.
pub struct Adapter {
    live: Arc<Instance>,
}

impl Adapter {
    /// The adapter over the live instance.
    pub fn new(live: Arc<Instance>) -> Self {
        Adapter { live }
    }

    /// Answers 508 to a request that already passed through this instance (its `Via` names
    /// us), before routing, so a loop ends on its second pass; true when it did.
    async fn came_back(&self, session: &mut Session) -> Result<bool> {
        let via = session.req_header().headers.get_all(http::header::VIA);
        if !self.live.id.seen_in(via.iter().map(|v| v.as_bytes())) {
            return Ok(false);
        }
        crate::telemetry::refusals::refuse(
            "loop",
            format_args!(
                "508 loop: the request already passed through this tether (Via {}) from {}",
                self.live.id.token(),
                facts::peer_ip(session)
            ),
        );
        respond_plain(
            session,
            508,
            "loop detected: this request already passed through this tether\n",
        )
        .await?;
        Ok(true)
    }
}

/// Writes a short plain-text answer that tether gives itself (404, 503).
async fn respond_plain(session: &mut Session, status: u16, body: &'static str) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len())?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await
}

#[async_trait]
impl ProxyHttp for Adapter {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        guard::header_complete();
        // The one snapshot this request reads, in every hook, even across a reload.
        let snap = self.live.snapshot();
        let limit = snap.config.limits.max_request_header_bytes;
        hold::per_request(session.as_mut(), &snap.config.limits);
        ctx.snapshot = Some(snap);
        let req = session.req_header();
        let raw = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        let checked = if guard::bare_cr_in_request_line() {
            Err(limits::Refused::BadTarget)
        } else {
            limits::check(req, raw.as_deref(), limit)
        };
        if let Err(refused) = checked {
            let peer = facts::peer_ip(session);
            refusals::refuse(
                refused.reason(),
                format_args!("{} {refused:?} from {peer}", refused.status()),
            );
            // Pingora's error line about the refusal would repeat this one (SPEC §3.7).
            ctx.refusal_logged = true;
            respond_plain(session, refused.status(), refused.body()).await?;
            // Nothing more is read from a connection whose framing cannot be trusted.
            return Err(Error::explain(
                ErrorType::HTTPStatus(refused.status()),
                "request refused",
            ));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.came_back(session).await? || acme::answered(&self.live, session).await? {
            return Ok(true);
        }
        let snap = ctx.snapshot.take().unwrap_or_else(|| self.live.snapshot());
        let req = session.req_header();
        let peer = facts::peer_ip(session);
        let client = facts::client_ip(&snap, req, peer);
        let tls = facts::is_tls(session);
        let now = unix_now();
        let decision = {
            let cookies = facts::cookie_headers(req);
            let request = RequestFacts {
                host: facts::host(req),
                client_ip: client,
                cookies: &cookies,
                headers: &req.headers,
                random: fastrand::u64(..),
                tls,
            };
            // Routing in two steps: the balancer and the session key once, then a shared store
            // refreshes the request's header session (bounded wait), then the decision.
            match admit(&snap, &request) {
                Ok(admitted) => {
                    self.live.state.prepare(&snap, &admitted).await;
                    decide(&snap, &request, &admitted, now)
                }
                Err(refusal) => Err(refusal),
            }
        };
        ctx.facts = Some(Arrival {
            peer,
            client,
            tls,
            now,
        });
        ctx.snapshot = Some(snap);
        let refusal = match decision {
            Ok(d) => {
                ctx.decision = Some(d);
                return Ok(false);
            }
            Err(refusal) => refusal,
        };
        ctx.answered_by = refusal.balancer();
        match refusal {
            Refusal::HttpsOnly { .. } => {
                let location = redirect::https_location(session.req_header());
                redirect::respond(session, &location).await?;
                Ok(true)
            }
            Refusal::NoBalancer => {
                respond_plain(session, 404, "no load balancer answers this host\n").await?;
                Ok(true)
            }
            Refusal::NoEndpoint { .. } => {
                respond_plain(session, 503, "no healthy endpoint is available\n").await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(snap), Some(decision)) = (&ctx.snapshot, &ctx.decision) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "upstream_peer before routing",
            ));
        };
        // On a retry this is either the failover target `fail_to_connect` put in the decision,
        // or, after a stale pooled connection broke, the same endpoint on a fresh connection.
        let target = decision.target;
        let endpoint = snap.endpoint(target);
        // Routing never picks an endpoint whose name has not resolved (it is not healthy); a
        // connect failure may have moved the request on to the endpoint's next address.
        let Some(addr) = ctx.attempts.address_for(target, &endpoint.state) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "routed to an endpoint with no address",
            ));
        };
        let peer = endpoint.origin.peer_at(addr);
        ctx.attempts.tried.push(target);
        ctx.attempts.inflight = Some(InFlight::start(&endpoint.state));
        ctx.timing.upstream_started = Some(Instant::now());
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        retry::on_connect_failure(ctx, e)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // For the JSON access log: TCP (and TLS) connect time, or a pooled connection.
        ctx.timing.upstream_connect = ctx.timing.upstream_started.map(|t| t.elapsed());
        ctx.timing.upstream_reused = reused;
        match origin::name_refused(digest) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // A certificate refused by `connected_to_upstream`: nothing was sent, so it is a connect
        // failure like Pingora's own certificate errors (SPEC 3.4).
        if *e.etype() == ErrorType::InvalidCert {
            return retry::on_connect_failure(ctx, e);
        }
        // A status retry (`upstream_response_filter`) was decided, checks and all, already.
        if *e.etype() == retry::RETRY_ON_STATUS {
            return e;
        }
        // Pingora's default.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        hold::body_progress(end_of_stream);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = hold::failure_status(e, session.response_written().is_some());
        if let Some(reason) = hold::refusal_reason(e) {
            let peer = facts::peer_ip(session);
            let what = hold::HeldUp {
                reason,
                code,
                limits: ctx.snapshot.as_ref().map(|s| &s.config.limits),
            };
            crate::telemetry::refusals::refuse(reason, format_args!("{peer}: {what}"));
            // Pingora's own ERROR line for it would be a second line for one refusal.
            ctx.refusal_logged = true;
        }
        if code > 0 {
            if let Err(e) = session.respond_error(code).await {
                log::debug!("cannot send the error response: {e}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(snap), Some(decision), Some(facts)) = (&ctx.snapshot, &ctx.decision, &ctx.facts)
        else {
            return Ok(());
        };
        if let Some(host) = &snap.endpoint(decision.target).host {
            upstream.insert_header(http::header::HOST, host.as_str())?;
        }
        forward_cookies_without_cflb(upstream)?;
        // An additional field line is the same as a list entry appended (RFC 9110 §5.3).
        let via = self.live.id.via_for(session.req_header().version);
        upstream.append_header(http::header::VIA, via.clone())?;
        // One buffer: every line of the client's chain, then the peer this hop saw.
        let mut xff = Vec::new();
        let lines = || {
            upstream
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes())
        };
        forwarded::upstream_value(lines, facts.peer, &mut xff);
        upstream.insert_header("x-forwarded-for", xff)?;
        upstream.insert_header("x-forwarded-proto", forwarded_proto(facts.tls))?;
        if !snap.is_trusted_proxy(facts.peer) && forwarded::has_client_claims(&upstream.headers) {
            for name in &forwarded::CLIENT_CLAIMS {
                upstream.remove_header(name);
            }
        }
        // Replaces every line, a trusted proxy's too: the upstream sees the one client address
        // tether routed and logged by (SPEC §3.7).
        upstream.insert_header("x-real-ip", forwarded::real_ip_value(facts.client))?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.timing.upstream = ctx.timing.upstream_started.map(|t| t.elapsed());
        // Runs before the header is written downstream: the last moment an answer can be retried.
        match retry::on_status(session, ctx, upstream.status.as_u16()) {
            Some(retry) => Err(retry),
            None => Ok(()),
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(snap), Some(decision), Some(facts)) = (&ctx.snapshot, &ctx.decision, &ctx.facts)
        else {
            return Ok(());
        };
        let lb = &snap.balancers[decision.balancer];
        let endpoint = snap.endpoint(decision.target).id;
        match decision.pin {
            PinAction::None => {}
            PinAction::Set { expires } => {
                let token = snap.keys.mint(&lb.name, endpoint, expires);
                let value = set_cookie(&token, lb.affinity.cookie, facts.tls, facts.now, expires);
                resp.append_header(http::header::SET_COOKIE, value)?;
            }
            PinAction::Remember { session } => {
                self.live.state.remember(snap, decision, session);
            }
        }
        Ok(())
    }

    /// A status retry is reported by tether's own line (`proxy::retry`), not Pingora's warning.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        error: &Error,
        _context: pingora_proxy::ProxyWarnLogContext,
    ) -> bool {
        *error.etype() == retry::RETRY_ON_STATUS
    }

    /// A refusal tether logged itself writes that one line (SPEC §3.7), not Pingora's too.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        ctx.refusal_logged
    }

    /// What Pingora's own error lines say about the request: the client's bytes escaped as in
    /// the access log, so a crafted Host or path cannot forge a line.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        access_log::summary(session.req_header())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.attempts.inflight = None;
        let format = match &ctx.snapshot {
            Some(snap) => snap.config.access_log.format,
            None => self.live.snapshot().config.access_log.format,
        };
        match format {
            AccessLogFormat::Text => access_log::write(session, e, ctx),
            AccessLogFormat::Json => access_json::write(session, e, ctx),
        }
        if let Some(snap) = &ctx.snapshot {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            // A request refused before routing (SPEC 3.7) is counted under the balancer its
            // Host names, as one that was routed; only such requests look it up here.
            let answered_by = match (&ctx.decision, ctx.answered_by, &ctx.facts) {
                (None, None, None) => snap.balancer_for_host(facts::host(session.req_header())),
                (_, answered_by, _) => answered_by,
            };
            count::finished(
                snap,
                ctx.decision.as_ref(),
                answered_by,
                status,
                ctx.timing.upstream,
            );
        }
    }
}

/// The `X-Forwarded-Proto` value: static, so inserting it copies and checks nothing.
fn forwarded_proto(tls: bool) -> http::HeaderValue {
    http::HeaderValue::from_static(if tls { "https" } else { "http" })
}

/// Rewrites the upstream `Cookie` header without `__cflb`, leaving other cookies' bytes intact
/// (non-ASCII ones included); untouched (and nothing allocated) when the request carries no
/// `__cflb`.
fn forward_cookies_without_cflb(upstream: &mut RequestHeader) -> Result<()> {
    let values = || {
        upstream
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
    };
    if !values().any(has_cflb) {
        return Ok(());
    }
    // Only bytes of values Pingora accepted, joined by "; ", so the result is a valid value.
    let mut kept = Vec::new();
    for v in values() {
        push_without_cflb(v, &mut kept);
    }
    upstream.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        upstream.insert_header(http::header::COOKIE, kept)?;
    }
    Ok(())
}

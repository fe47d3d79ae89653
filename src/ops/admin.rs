//! The admin listener (SPEC §4): a small HTTP app on its own socket, separate from the proxy's
//! listeners, so operating tether never competes with — or is reachable through — client
//! traffic. It reads the live snapshot per request, so a reload changes what it shows and the
//! token it accepts at once; only its address needs a graceful upgrade.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use smallvec::SmallVec;

use crate::balancer::Snapshot;
use crate::clock::unix_now;
use crate::instance::Instance;
use crate::telemetry::escape::Escaped;

use super::admin_auth::{bearer_matches, same_site};
use super::status::{self, NotFound};
use super::{admin_path, reload, status_page};
use crate::telemetry::metrics;

/// The 403 body for a request that reached the admin listener through tether's own proxy.
const THROUGH_PROXY: &str = "refused: this request came through tether's own proxy (its Via); an endpoint must not point at the admin listener";

/// The policy of every answer but the status page: nothing in it may load, run or be framed.
const STRICT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The admin API over the live instance.
pub struct AdminApi {
    pub live: Arc<Instance>,
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

fn json_response(status: StatusCode, v: &Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json_response(status, &json!({ "ok": false, "error": message }))
}

/// `GET /metrics`: every counter, with the gauges read from `snap` now.
fn metrics_page(snap: &Snapshot) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let endpoints = snap.pools.iter().flat_map(|p| {
        p.endpoints.iter().map(|e| metrics::EndpointGauges {
            pool: &p.id,
            endpoint: &e.name,
            healthy: e.healthy(),
            enabled: e.enabled_now(),
            inflight: e.state.inflight.load(Relaxed),
        })
    });
    let sessions = snap.balancers.iter().filter_map(|b| {
        let store = b.sessions.as_ref()?;
        store.sync();
        Some((b.name.as_str(), store.count()))
    });
    metrics::render(endpoints, sessions)
}

impl AdminApi {
    /// Answers one admin request; `method` comes from the request line, `segments` are its
    /// path's, percent-decoded.
    fn route(&self, method: &Method, segments: &[&str]) -> Response<Vec<u8>> {
        let snap = self.live.snapshot();
        let now = unix_now();
        match (method, segments) {
            (&Method::GET, [""]) => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status_page::render(&snap, now, &super::certs::certificates(&self.live))
                    .into_bytes(),
            ),
            (&Method::GET, ["status"]) => {
                let mut doc = status::status_json(&snap, now);
                doc["instance_id"] = json!(self.live.id.as_str());
                doc["state"] = self.live.state.status_json();
                let certs = super::certs::certificates(&self.live);
                doc["certificates"] = certs.iter().map(|c| c.to_json(now)).collect();
                doc["acme"] = self.live.acme.status_json().into();
                json_response(StatusCode::OK, &doc)
            }
            (&Method::GET, ["metrics"]) => respond(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                (metrics_page(&snap)
                    + &crate::telemetry::store::render()
                    + &crate::telemetry::certs::render(
                        super::certs::served_expiries(&self.live)
                            .iter()
                            .map(|(n, t)| (n.as_str(), *t)),
                    ))
                    .into_bytes(),
            ),
            (
                &Method::POST,
                &["pools", pool, "endpoints", name, action @ ("drain" | "undrain")],
            ) => {
                let drain = action == "drain";
                match self
                    .live
                    .operate(|snap| status::set_drained(snap, pool, name, drain, now))
                {
                    Ok(view) => {
                        let snap = self.live.snapshot();
                        let since = crate::state::admin_drain_of(&snap, pool, name);
                        self.live.state.drain_changed(pool, name, since);
                        json_response(StatusCode::OK, &view.to_json())
                    }
                    Err(NotFound::Pool) => {
                        error(StatusCode::NOT_FOUND, &format!("no pool {pool:?}"))
                    }
                    Err(NotFound::Endpoint) => error(
                        StatusCode::NOT_FOUND,
                        &format!("no endpoint {name:?} in pool {pool:?}"),
                    ),
                }
            }
            (_, [""] | ["status"] | ["metrics"] | ["reload"])
            | (_, ["pools", _, "endpoints", _, "drain" | "undrain"]) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApi {
    /// Every answer, whatever produced it, leaves with the headers of [`secure`].
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut resp = self.answer(session).await;
        secure(&mut resp);
        resp
    }
}

impl AdminApi {
    /// The answer to one request, before [`secure`].
    async fn answer(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The API takes no request body; read it off so a kept-alive connection stays in sync.
        let _ = session.drain_request_body().await;
        if let Some(refused) = self.refuse(session) {
            return refused;
        }
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_string());
        let resp = match admin_path::segments(&path) {
            // A decoded `/` or broken escape names nothing the API has.
            None => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
            Some(segments) => {
                let segments: SmallVec<[&str; 5]> = segments.iter().map(|s| s.as_ref()).collect();
                if method == Method::POST && segments[..] == ["reload"] {
                    self.reload().await
                } else {
                    self.route(&method, &segments)
                }
            }
        };
        log::info!(
            target: "admin",
            "{} {} {}",
            Escaped(method.as_str().as_bytes()),
            Escaped(path.as_bytes()),
            resp.status().as_u16()
        );
        resp
    }

    /// `POST /reload`: a reload looks up endpoint host names, blocking work kept off the reactor.
    async fn reload(&self) -> Response<Vec<u8>> {
        let live = self.live.clone();
        match tokio::task::spawn_blocking(move || reload::reload_and_log(&live)).await {
            Ok(Ok(())) => json_response(StatusCode::OK, &json!({ "ok": true })),
            Ok(Err(errs)) => {
                let errors: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "ok": false, "errors": errors }),
                )
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    /// The answer to a request this listener must not serve (through tether's own proxy,
    /// without the token, or from a page on another site); `None` when it may be served.
    fn refuse(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let req = session.req_header();
        // Before auth: through the proxy, a token-less admin API would take any client's
        // drain or reload (SPEC §4); with a token, it still has no business answering.
        let via = req.headers.get_all(http::header::VIA);
        if self.live.id.seen_in(via.iter().map(|v| v.as_bytes())) {
            log::warn!(target: "admin", "refused: came through tether's own proxy {}", Escaped(req.raw_path()));
            return Some(error(StatusCode::FORBIDDEN, THROUGH_PROXY));
        }
        let snap = self.live.snapshot();
        let header = |name| {
            req.headers
                .get(name)
                .map(|v: &http::HeaderValue| v.as_bytes())
        };
        match snap.config.admin.as_ref().and_then(|a| a.token.as_ref()) {
            Some(token) => {
                if bearer_matches(token.expose(), header(http::header::AUTHORIZATION)) {
                    return None;
                }
                // A browser cannot send a bearer header when it opens the page: it gets a
                // page without data that asks for the token and loads the rest with it.
                // The page's own script marks its requests: those get the 401 that makes
                // it ask for the token.
                let from_script = header(http::HeaderName::from_static(status_page::SCRIPT_HEADER));
                if req.method == Method::GET && req.uri.path() == "/" && from_script.is_none() {
                    return Some(respond(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        status_page::locked().into_bytes(),
                    ));
                }
                let mut resp = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"tether admin\""),
                );
                Some(resp)
            }
            None => {
                let host = req
                    .uri
                    .authority()
                    .map(|a| a.as_str().as_bytes())
                    .or_else(|| header(http::header::HOST));
                let local = session
                    .server_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip());
                let refused = same_site(host, header(http::header::ORIGIN), local).err()?;
                log::warn!(target: "admin", "{} {}", refused.message(), Escaped(req.raw_path()));
                Some(error(StatusCode::FORBIDDEN, refused.message()))
            }
        }
    }
}

/// Adds what every admin answer carries (SPEC §4): a `Content-Security-Policy` (the status
/// page's names its own script and style by hash; anything else may load and run nothing),
/// `X-Frame-Options: DENY` for browsers without `frame-ancestors`, and `nosniff`, so a JSON or
/// text answer is never read as a page or a script.
fn secure(resp: &mut Response<Vec<u8>>) {
    let h = resp.headers_mut();
    let html = h
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    let policy = if html {
        status_page::content_security_policy()
    } else {
        http::HeaderValue::from_static(STRICT_POLICY)
    };
    h.insert(http::header::CONTENT_SECURITY_POLICY, policy);
    h.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
}

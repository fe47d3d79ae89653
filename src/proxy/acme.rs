//! HTTP-01 validations (SPEC §3.11): a plain-HTTP request for `/.well-known/acme-challenge/<token>`
//! whose token this instance (or, with Redis, another instance) expects is answered here, before
//! any balancer, redirect or `always_use_https` sees it. Any other token goes on to routing, so
//! an origin that gets its own certificates still receives its validations.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::Result;
use pingora_proxy::Session;

use crate::instance::Instance;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// True when `session` was an HTTP-01 validation and has been answered.
pub async fn answered(live: &Instance, session: &mut Session) -> Result<bool> {
    if !live.acme.enabled || super::facts::is_tls(session) {
        return Ok(false);
    }
    let Some(token) = session.req_header().uri.path().strip_prefix(PREFIX) else {
        return Ok(false);
    };
    if token.is_empty() || token.contains('/') {
        return Ok(false);
    }
    let answer = match live.acme.answers.get(token) {
        Some(a) => a,
        None => match live.state.shared_cert_store() {
            Some(store) => match store.challenge(token).await {
                Some(a) => a,
                None => return Ok(false),
            },
            None => return Ok(false),
        },
    };
    log::info!("acme: answered an HTTP-01 validation for token {token}");
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header("content-type", "application/octet-stream")?;
    resp.insert_header("content-length", answer.len())?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(answer)), true)
        .await?;
    Ok(true)
}

//! `always_use_https` (SPEC §2): a plain-HTTP request to such a balancer is answered with a 301
//! to the same host and target over https, before anything is routed or forwarded.
//!
//! The redirect names no port: like Cloudflare's, it sends the client to https on 443, which is
//! where a public TLS listener (or the port forwarded to it) is expected to be.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use pingora_proxy::Session;

use crate::balancer::snapshot::host_name;

use super::facts;

/// The `Location` to send a plain-HTTP request to: the same host and target over https. The
/// router decided that the request is redirected (`Refusal::HttpsOnly`), and that its host is
/// usable here.
pub fn https_location(req: &RequestHeader) -> String {
    let name = host_name(facts::host(req));
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if name.contains(':') {
        format!("https://[{name}]{target}")
    } else {
        format!("https://{name}{target}")
    }
}

/// Answers 301 to `location`.
pub async fn respond(session: &mut Session, location: &str) -> Result<()> {
    const BODY: &[u8] = b"moved to https\n";
    let mut resp = ResponseHeader::build(301, Some(4))?;
    resp.insert_header(http::header::LOCATION, location)?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", BODY.len())?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(BODY)), true)
        .await
}

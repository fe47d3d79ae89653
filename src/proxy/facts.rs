//! Reading a request's routing facts off the Pingora session: Host, client IP, cookies, TLS.

use std::net::{IpAddr, Ipv4Addr};

use pingora::http::RequestHeader;
use pingora_proxy::Session;
use smallvec::SmallVec;

use crate::balancer::Snapshot;

/// The `Host` to route by: an absolute or HTTP/2 target's authority, else the `Host` header.
pub fn host(req: &RequestHeader) -> &str {
    if let Some(authority) = req.uri.authority() {
        return authority.as_str();
    }
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

/// The `Host` as the client sent it, as bytes, for the access log: unlike [`host`] it keeps a
/// value that is not visible ASCII.
pub fn host_bytes(req: &RequestHeader) -> &[u8] {
    if let Some(authority) = req.uri.authority() {
        return authority.as_str().as_bytes();
    }
    req.headers
        .get(http::header::HOST)
        .map_or(&b""[..], |h| h.as_bytes())
}

/// The socket peer's address (unspecified for a non-IP socket, which tether never listens on).
pub fn peer_ip(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// True when the request arrived over TLS.
pub fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most address of `X-Forwarded-For` (every line of it) that is not itself a trusted proxy.
pub fn client_ip(snap: &Snapshot, req: &RequestHeader, peer: IpAddr) -> IpAddr {
    if snap.trusted_proxies.is_empty() || !snap.is_trusted_proxy(peer) {
        return peer;
    }
    let lines = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes());
    super::forwarded::client_from(lines, |ip| snap.is_trusted_proxy(ip)).unwrap_or(peer)
}

/// The raw values of the request's `Cookie` headers, in order, as bytes (a non-ASCII byte must
/// not hide a header); on the stack for the usual one or two headers, since this runs on every
/// request.
pub fn cookie_headers(req: &RequestHeader) -> SmallVec<[&[u8]; 2]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect()
}

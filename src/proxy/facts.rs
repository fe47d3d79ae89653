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
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(snap: &Snapshot, req: &RequestHeader, peer: IpAddr) -> IpAddr {
    if snap.trusted_proxies.is_empty() || !snap.is_trusted_proxy(peer) {
        return peer;
    }
    let hops = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    rightmost_untrusted(hops, |ip| snap.is_trusted_proxy(ip)).unwrap_or(peer)
}

/// The right-most hop that parses and is not trusted; a hop that does not parse ends the walk,
/// since nothing to its left can be believed.
fn rightmost_untrusted<'a>(
    hops: impl Iterator<Item = &'a str>,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let hops: Vec<&str> = hops.collect();
    for hop in hops.iter().rev() {
        let ip = hop.parse::<IpAddr>().ok()?.to_canonical();
        if !trusted(ip) {
            return Some(ip);
        }
    }
    None
}

/// The raw values of the request's `Cookie` headers, in order; on the stack for the usual one or
/// two headers, since this runs on every request.
pub fn cookie_headers(req: &RequestHeader) -> SmallVec<[&str; 2]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let hops = ["203.0.113.9", "198.51.100.1", "10.0.0.2"];
        assert_eq!(
            rightmost_untrusted(hops.into_iter(), trusted),
            "198.51.100.1".parse().ok()
        );
        assert_eq!(rightmost_untrusted(["10.0.0.1"].into_iter(), trusted), None);
        assert_eq!(
            rightmost_untrusted(["garbage", "10.0.0.1"].into_iter(), trusted),
            None
        );
        assert_eq!(
            rightmost_untrusted(["2001:db8::1"].into_iter(), trusted),
            "2001:db8::1".parse().ok()
        );
    }
}

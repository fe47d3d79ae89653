//! How tether reaches one endpoint: a Pingora peer built once per config load (TLS, SNI,
//! certificate checks, CA), so that a request only clones it and sets the address it connects
//! to, and so that every request to one address presents an identical peer and Pingora reuses
//! its pooled connections. Pingora pools by the peer's hash, which includes the address: when
//! the resolver moves an endpoint, connections pooled to its old address are never reused.
//!
//! With `verify: true` OpenSSL checks the chain and tether checks the name itself, after the
//! handshake (`cert_name` says why): Pingora's own host-name check is turned off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::tls::{CaType, HandshakeCompleteHook, TlsRef};
use pingora::protocols::{Digest, ALPN};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use super::cert_name::{self, Reference};
use crate::config::OriginTls;

/// How long tether waits for an upstream connect (TCP, and TLS handshake on its own) before
/// calling it failed (Cloudflare 522).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An endpoint's connection settings, compiled.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The peer every proxied request clones, its address set to the one it connects to (the
    /// endpoint's addresses are runtime state: `balancer::Addresses`).
    template: HttpPeer,
    tls: bool,
    /// The TLS parameters, kept apart so an `https` monitor can use them on an endpoint that is
    /// proxied in plain HTTP.
    sni: String,
    verify: bool,
    ca: Option<Arc<CaType>>,
    ca_path: Option<String>,
}

/// Same settings (as written; a CA file re-read at a reload compares equal).
impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        (self.is_tls(), &self.sni, self.verify, &self.ca_path)
            == (other.is_tls(), &other.sni, other.verify, &other.ca_path)
    }
}

impl Origin {
    /// Builds the request peer's template with `tls` (its CA list already read by validation).
    /// (`verify: false` is warned about by validation, `config::warnings`.)
    pub fn compile(tls: &OriginTls) -> Origin {
        let mut origin = Origin {
            template: HttpPeer::new(UNSET, false, String::new()),
            tls: tls.enabled,
            sni: tls.sni.clone(),
            verify: tls.verify,
            ca: tls.ca.clone(),
            ca_path: tls.ca_path.clone(),
        };
        origin.template = origin.peer_for(UNSET, origin.tls, CONNECT_TIMEOUT);
        if origin.tls {
            // h2 when the origin offers it by ALPN, else HTTP/1.1.
            origin.template.options.alpn = ALPN::H2H1;
        }
        origin
    }

    /// The peer for one proxied request to `addr`, one of the endpoint's current addresses.
    pub fn peer_at(&self, addr: SocketAddr) -> Box<HttpPeer> {
        let mut peer = Box::new(self.template.clone());
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(addr);
        peer
    }

    /// Whether requests reach the endpoint over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A peer at `addr` (a monitor may use another port) with this endpoint's TLS checks, SNI
    /// and CA when `tls`; HTTP/1.1 only.
    pub fn peer_for(&self, addr: SocketAddr, tls: bool, timeout: Duration) -> HttpPeer {
        let sni = if tls { self.sni.clone() } else { String::new() };
        let mut peer = HttpPeer::new(addr, tls, sni);
        peer.options.connection_timeout = Some(timeout);
        if tls {
            peer.options.verify_cert = self.verify;
            peer.options.ca = self.ca.clone();
            // Pingora's check (OpenSSL's default flags) would accept the subject CN and partial
            // wildcards; the name is checked by `name_check` instead, read by `name_refused`.
            peer.options.verify_hostname = false;
            if self.verify {
                peer.options.upstream_tls_handshake_complete_hook =
                    Some(name_check(Reference::of(&self.sni)));
            }
        }
        peer
    }

    /// Whether the certificate is checked (chain and name); `false` accepts any certificate.
    pub fn verify(&self) -> bool {
        self.verify
    }

    /// The server name sent and checked (an IP literal: none sent, the address checked).
    pub fn sni(&self) -> &str {
        &self.sni
    }
}

/// The template's address until a request sets its own; never connected to.
const UNSET: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// A certificate OpenSSL verified that does not name the server tether meant to reach.
#[derive(Debug)]
struct NotNamed(Reference);

/// Checks, after a verified handshake, that the certificate names `reference`.
fn name_check(reference: Reference) -> HandshakeCompleteHook {
    Arc::new(move |ssl: &TlsRef| {
        let named = ssl
            .peer_certificate()
            .is_some_and(|cert| cert_name::names(&cert, &reference));
        (!named)
            .then(|| Arc::new(NotNamed(reference.clone())) as Arc<dyn std::any::Any + Send + Sync>)
    })
}

/// The certificate-name failure of a connection that was otherwise established (a verified
/// certificate that does not name the origin), as an `InvalidCert` error: a connect failure
/// for failover, like Pingora's own certificate errors.
pub fn name_refused(digest: Option<&Digest>) -> Option<Box<Error>> {
    let ssl = digest?.ssl_digest.as_ref()?;
    let NotNamed(name) = ssl.extension.get::<NotNamed>()?;
    let mut e = Error::explain(
        ErrorType::InvalidCert,
        format!("TLS connect() failed: certificate does not name {name}"),
    );
    e.as_up();
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::upstreams::peer::Peer;

    fn tls(enabled: bool, verify: bool) -> OriginTls {
        OriginTls {
            enabled,
            sni: "origin.example".into(),
            verify,
            ca_path: None,
            ca: None,
        }
    }

    #[test]
    fn every_request_presents_the_same_peer_so_connections_are_reused() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let o = Origin::compile(&tls(true, true));
        let (a, b) = (o.peer_at(addr), o.peer_at(addr));
        assert_eq!(a.reuse_hash(), b.reuse_hash());
        // Another address (the resolver moved the endpoint) is another pool of connections.
        let moved = o.peer_at("127.0.0.3:8443".parse().unwrap());
        assert_ne!(a.reuse_hash(), moved.reuse_hash());
        assert_eq!(moved.address().to_string(), "127.0.0.3:8443");
        assert!(a.is_tls());
        assert_eq!(a.sni(), "origin.example");
        assert!(a.verify_cert());
        // The name is tether's check (`cert_name`), never OpenSSL's default one.
        assert!(!a.verify_hostname());
        assert!(a.options.upstream_tls_handshake_complete_hook.is_some());
        assert_eq!(a.options.alpn, ALPN::H2H1);
        assert_eq!(a.options.connection_timeout, Some(CONNECT_TIMEOUT));
    }

    #[test]
    fn plain_and_unverified_peers_differ_from_verified_ones() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let plain = Origin::compile(&tls(false, true)).peer_at(addr);
        assert!(!plain.is_tls());
        assert_eq!(plain.sni(), "");
        assert_eq!(plain.options.alpn, ALPN::H1);
        let loose = Origin::compile(&tls(true, false)).peer_at(addr);
        assert!(!loose.verify_cert() && !loose.verify_hostname());
        assert!(loose.options.upstream_tls_handshake_complete_hook.is_none());
        let strict = Origin::compile(&tls(true, true)).peer_at(addr);
        assert_ne!(loose.reuse_hash(), strict.reuse_hash());
    }

    #[test]
    fn a_monitor_peer_keeps_the_checks_on_another_port() {
        let o = Origin::compile(&tls(false, true));
        let other: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        let p = o.peer_for(other, true, Duration::from_secs(2));
        assert!(p.is_tls() && p.verify_cert());
        assert_eq!(p.sni(), "origin.example");
        assert_eq!(p.address().to_string(), "127.0.0.1:9443");
    }
}

//! TLS, compiled from the config: how each endpoint is reached (`origin`: the Pingora peer with
//! its SNI, verification and CA; `cert_name`: whether a certificate names it), which
//! certificates each TLS listener serves (`listener_certs`, loaded per config), the slot a
//! listener serves from and that can change at run time (`slot`: a reload stores re-read
//! certificates there, ACME its issued one beside them), and the listener's acceptor choosing from
//! its slot by SNI, answering TLS-ALPN-01 validations too (`acceptor`); `cert_info` reads a
//! served certificate's names, issuer and expiry. The balancer's snapshot keeps the first two,
//! the instance the slots; the proxy and health checks use them; this module depends on neither.

pub mod acceptor;
pub mod cert_info;
pub mod cert_name;
pub mod listener_certs;
pub mod origin;
pub mod slot;

//! TLS as a snapshot holds it, compiled from the config once per load: how each endpoint is
//! reached (`origin`: the Pingora peer with its SNI, verification and CA; `cert_name`: whether
//! a certificate names it) and which certificates each TLS listener serves
//! (`listener_certs`). The balancer's snapshot keeps them and the proxy and health checks use
//! them; this module depends on neither.

pub mod cert_name;
pub mod listener_certs;
pub mod origin;

//! tether: an edge HTTP load balancer on Pingora with Cloudflare-style session affinity.
//!
//! See docs/design.md for the module map, one request's path and where a change goes.

pub mod acme;
pub mod affinity;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod dns;
pub mod health;
pub mod import;
pub mod instance;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod via;

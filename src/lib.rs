//! tether: an edge HTTP load balancer on Pingora with Cloudflare-style session affinity.
//!
//! `config` reads and validates the YAML; `balancer` turns it into a snapshot and makes the
//! routing decision; `affinity` holds the cookie token and hashing; `proxy` adapts the decision
//! to Pingora's hooks; `state` keeps runtime state across upgrades, restarts and instances;
//! `ops` and `server` run the process.

pub mod affinity;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod health;
pub mod live;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod state;

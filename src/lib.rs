//! tether: an edge HTTP load balancer on Pingora with Cloudflare-style session affinity.
//!
//! From the ground up (each part uses only those before it; docs/design.md draws one request's
//! path through them):
//! - `clock`: unix time, the unit of cookie expiry and drain clocks.
//! - `config`: the YAML schema, validation naming the YAML path of every error, and the
//!   `Validated` config with every value parsed.
//! - `telemetry`: Prometheus counters and the process log (batched access lines).
//! - `tls`: TLS compiled from the config: how each endpoint is reached (a Pingora peer) and
//!   the certificates each TLS listener serves.
//! - `affinity`: session primitives: the signed `__cflb` token, request cookies, header session
//!   keys and their store, weighted rendezvous hashing.
//! - `balancer`: the snapshot compiled from a config, the runtime state that outlives it, the
//!   affinity modes (`pinning`), `origin_steering`, and the pure routing and failover decisions.
//! - `instance`: the snapshot in effect and the reload transaction (compile, then commit).
//! - `health`: the monitor service: probes, verdict streaks, drain log.
//! - `state`: runtime state kept across upgrades, restarts and instances (embedded or Redis).
//! - `ops`: operating the process: reload on SIGHUP, the admin API (status, drain, `/metrics`).
//! - `proxy`: the Pingora adapter: connection guard, request facts, carrying out decisions,
//!   the access log.
//! - `server`: builds the Pingora server and its services from the config.

pub mod affinity;
pub mod balancer;
pub mod clock;
pub mod config;
pub mod health;
pub mod import;
pub mod instance;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;

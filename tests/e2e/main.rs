//! tether's integration tests, as one test binary: real upstreams and a real `tether` process on
//! loopback (the harness is [`common`]), plus the property tests of the pure core.
//!
//! One binary, not one per file, because every test binary links tether and through it Pingora:
//! with a binary per file the link step was most of `make test`'s build on two cores
//! (bench/README.md, "make test"). A module per area; run one with a filter, e.g.
//! `cargo test --test e2e drain::`. All tests share the process, so a test never changes what
//! another could see (the process environment, a fixed port): the harness hands out free ports
//! and passes settings to the `tether` it starts, not to this process.

mod common;

// Routing and affinity.
mod cookie_affinity;
mod ip_header_affinity;
mod pools;
mod routing;

// Endpoint state: health, drains, failover.
mod drain;
mod failover;
mod failover_clock;
mod health;
mod retry_status;

// The edge: what clients send, connections, holding, TLS toward clients and origins.
mod acme;
mod edge_connections;
mod edge_holding;
mod edge_requests;
mod hostile_input;
mod listener_certs;
mod origin_names;
mod origin_tls;
mod origin_tls_failover;
mod resolver;
mod tls;

// Operating tether: config, reloads, upgrades, the admin API and page, logs and metrics.
mod access_log_json;
mod admin;
mod bench_chart;
mod config_cli;
mod grafana_dashboard;
mod import_cloudflare;
mod reload;
mod reload_race;
mod status_page_browser;
mod upgrade;

// Runtime state kept across restarts and shared between instances.
mod state_file;
mod state_redis;
mod state_upgrade;

// Property tests of the pure core (no tether process).
mod properties;
mod properties_conn;

// Minutes of load; ignored by `cargo test`, run by `make soak`.
mod soak;
